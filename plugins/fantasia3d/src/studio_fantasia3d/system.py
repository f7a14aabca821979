"""The Fantasia3D system: a geometry stage on surface normals, then a PBR texture stage.

Reference §5.5. Both stages rasterize a mesh extracted every step (``nvdiff-rasterizer``).

* Geometry stage (``texture: false``): the renderer draws no colour. For the first
  ``latent_steps`` steps the guidance's input is the normal map scaled to ``[-1, 1]`` with the
  silhouette as a fourth channel, handed over as *latents* (resized to the UNet's latent size,
  no VAE); afterwards the normal map in ``[0, 1]`` is handed over as an RGB image (encoded by the
  VAE), or with ``geometry_input: lambert`` (ours, for models that never saw a normal map) the
  mesh shaded in one learned colour (:mod:`studio_fantasia3d.lambert`). A fresh run first fits
  the SDF to its initial shape (``geometry.initialize_shape()``), once: never on resume, test or
  export, nor when ``system.weights`` gives the state (unless the geometry's
  ``force_shape_init`` says so).
* Texture stage (``texture: true``): the shaded render ``comp_rgb`` goes to the guidance.

The loss is the guidance's weighted losses plus Magic3D's mesh regularisers::

    loss = sum_X lambda_X * loss_X(guidance)
         + lambda_normal_consistency   * normal_consistency(mesh)
         + lambda_laplacian_smoothness * laplacian_smoothness(mesh)

Evaluation views of the geometry stage show the normal map and the silhouette (there is no
colour); the texture stage's show the shaded render, normals and silhouette.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import attrs
import torch

from studio.api import ConfigError, NonNegativeInt, find_checkpoint, grayscale, rgb
from studio_dreamfusion.system import DreamFusionSystem, weighted_guidance_losses
from studio_fantasia3d.lambert import (
    LambertBackground,
    LambertLight,
    lambert_render,
    random_backgrounds,
)
from studio_magic3d.losses import MESH_REGULARISERS, weighted_mesh_regularisers

log = logging.getLogger(__name__)


def normal_latents(comp_normal: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """The geometry stage's early guidance input ``[B, H, W, 4]``: ``(2 n - 1, opacity)``, the
    normal map in ``[0, 1]`` mapped to ``[-1, 1]`` beside the silhouette."""
    return torch.cat([comp_normal * 2.0 - 1.0, opacity], dim=-1)


def check_colour_material(cfg: Any, path: str) -> None:
    """Refuse ``geometry_convert_inherit_colour`` unless the material can start its albedo from a
    colour: ``pbr-material`` with the sigmoid activation."""
    key = f"{path}.geometry_convert_inherit_colour"
    if cfg.material_type != "pbr-material":
        raise ConfigError(
            f"{key}=true needs a material whose albedo can start from a colour "
            f"(pbr-material); {path}.material_type is {cfg.material_type!r}. Set the key to false."
        )
    activation = (cfg.material or {}).get("material_activation", "sigmoid")
    if activation != "sigmoid":
        raise ConfigError(
            f"{key}=true starts the albedo by inverting the sigmoid activation, but "
            f"{path}.material.material_activation is {activation!r}. Set it to sigmoid, or set "
            "the key to false."
        )


def check_colour_source(cfg: Any, path: str) -> None:
    """Refuse ``geometry_convert_inherit_colour`` when the run ``geometry_convert_from`` names
    (set) is no geometry stage of ``geometry_input: lambert``, the only kind with a colour."""
    _checkpoint, run = find_checkpoint(cfg.geometry_convert_from, f"{path}.geometry_convert_from")
    source = (run.load_parsed().get("system") or {}) if run is not None else {}
    if source.get("geometry_input") != "lambert":
        raise ConfigError(no_colour_message(cfg, path, source.get("geometry_input", "normal")))


def no_colour_message(cfg: Any, path: str, geometry_input: Any) -> str:
    return (
        f"{path}.geometry_convert_inherit_colour=true: {path}.geometry_convert_from="
        f"{cfg.geometry_convert_from!r} learned no colour (its system.geometry_input is "
        f"{geometry_input!r}, not 'lambert'). Set the key to false (in a pipeline whose earlier "
        "stage finished: `studio resume RUN_DIR <stage>.system.geometry_convert_inherit_colour"
        "=false`)."
    )


class Fantasia3DSystem(DreamFusionSystem):
    @attrs.define(kw_only=True)
    class Config(DreamFusionSystem.Config):
        latent_steps: NonNegativeInt = 1000
        """Geometry stage: steps whose guidance input is the normal map and silhouette as
        4-channel latents; later steps send the normal map as an RGB image."""
        texture: bool = False
        """The texture stage: the shaded render goes to the guidance (false: the geometry
        stage, normals only)."""
        geometry_input: Literal["normal", "lambert"] = "normal"
        """Geometry stage after ``latent_steps``: ``normal`` (the reference: the normal map as
        an image) or ``lambert`` (the mesh as a Lambertian surface of one learned colour, lit
        by the view's light over a background, see ``lambert_light`` and
        ``lambert_background``: for models that never saw a normal map, such as the primitives
        ones; the colour is learned so that the prompt's colour does not fight the shape)."""
        lambert_light: LambertLight = "distant"
        """``geometry_input: lambert``'s light: ``distant`` (the direction of the view's light
        position) or ``point`` (from each surface point to it, as the primitives data set)."""
        lambert_background: LambertBackground = "grey"
        """``geometry_input: lambert``'s background: ``grey`` or ``random`` (a solid colour per
        view, away from the learned colour, as the primitives data set)."""
        geometry_convert_inherit_colour: bool = False
        """Texture stage, with ``geometry_convert_from`` a geometry stage of ``geometry_input:
        lambert``: the albedo starts from that stage's learned colour (the material's
        ``start_albedo_from``) instead of the field's grey. Ours, for the primitives presets."""

    scene_terms: ClassVar[tuple[str, ...]] = MESH_REGULARISERS

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        if cfg.geometry_convert_inherit_colour:
            check_colour_material(cfg, path)
            if cfg.geometry_convert_from:  # a pipeline sets it when the stage starts
                check_colour_source(cfg, path)

    def build_parts(self, particle: int) -> dict[str, Any]:
        """The base parts; with ``geometry_convert_inherit_colour`` on a fresh conversion, the
        material's albedo starts from the source geometry stage's Lambert colour."""
        parts = super().build_parts(particle)
        if self.cfg.geometry_convert_inherit_colour and self.conversion_source is not None:
            source = self.conversion_source[0]
            albedo = getattr(source, "lambert_albedo", None)
            if albedo is None:  # a pipeline's source is known only now
                geometry_input = getattr(source.cfg, "geometry_input", "normal")
                raise ConfigError(no_colour_message(self.cfg, self.config_path, geometry_input))
            parts["material"].start_albedo_from(torch.sigmoid(albedo))
        return parts

    def configure(self) -> None:
        super().configure()
        # sigmoid(0) = 0.5 grey at the start; one colour for the whole surface
        self.lambert_albedo = (
            torch.nn.Parameter(torch.zeros(3)) if self.cfg.geometry_input == "lambert" else None
        )

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.initialize_shape_once()

    def initialize_shape_once(self) -> bool:
        """Fit the geometry to its configured initial shape when this run starts fresh.

        Runs when the geometry has ``initialize_shape`` and a ``shape_init``, the run is not
        resumed, and no ``system.weights`` or ``system.geometry_convert_from`` gave it a state
        (``force_shape_init`` overrides the last two). Returns whether it ran."""
        initialize = getattr(self.geometry, "initialize_shape", None)
        geometry_cfg = self.geometry.cfg
        if initialize is None or not getattr(geometry_cfg, "shape_init", None):
            return False
        if self.resumed:
            return False
        given_state = bool(self.cfg.weights or self.cfg.geometry_convert_from)
        if given_state and not getattr(geometry_cfg, "force_shape_init", False):
            log.info(
                "shape initialisation skipped: the geometry's state comes from %s (set "
                "system.geometry.force_shape_init=true to fit the initial shape anyway)",
                "system.weights" if self.cfg.weights else "system.geometry_convert_from",
            )
            return False
        initialize()
        return True

    def render(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The renderer's output for ``batch``: with colour in the texture stage only."""
        if self.cfg.texture:
            return self.renderer(**batch)
        return self.renderer(**batch, render_rgb=False)

    def guidance_input(
        self, out: dict[str, Any], batch: dict[str, Any]
    ) -> tuple[torch.Tensor, bool]:
        """``(image, rgb_as_latents)`` for the guidance at this step (module docstring)."""
        if self.cfg.texture:
            return out["comp_rgb"], False
        if self.global_step < self.cfg.latent_steps:
            return normal_latents(out["comp_normal"], out["opacity"]), True
        if self.cfg.geometry_input == "lambert":
            return self.lambert_image(out, batch), False
        return out["comp_normal"], False

    def lambert_image(
        self, out: dict[str, Any], batch: dict[str, Any], random_background: bool = True
    ) -> torch.Tensor:
        """The render in the learned colour, lit and filled as configured (``lambert_light``,
        ``lambert_background``; ``random_background=False`` keeps grey)."""
        albedo = torch.sigmoid(self.lambert_albedo)
        random = random_background and self.cfg.lambert_background == "random"
        return lambert_render(
            out["comp_normal"],
            out["opacity"],
            batch["light_positions"],
            albedo,
            background=random_backgrounds(albedo, out["opacity"].shape[0]) if random else None,
            positions=out["comp_position"] if self.cfg.lambert_light == "point" else None,
        )

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.render(batch)
        image, as_latents = self.guidance_input(out, batch)
        guidance_out = self.guidance(image, self.prompt_utils, **batch, rgb_as_latents=as_latents)
        loss, logged = weighted_guidance_losses(guidance_out, self.loss_weight, self.cfg.loss)
        regularisers, more = weighted_mesh_regularisers(out["mesh"], self.C, self.cfg.loss)
        return {"loss": loss + regularisers, **logged, **more}

    def eval_columns(self, batch: dict[str, Any]) -> list[Any]:
        """Texture stage: rgb | normal | opacity. Geometry stage: normal | opacity, after the
        Lambert render over grey with ``geometry_input: lambert`` (what an evaluator scores)."""
        if self.cfg.texture:
            return super().eval_columns(batch)
        out = self.render(batch)
        columns = [rgb(out["comp_normal"][0]), grayscale(out["opacity"][0])]
        if self.cfg.geometry_input == "lambert":
            columns.insert(0, rgb(self.lambert_image(out, batch, random_background=False)[0]))
        return columns
