"""The Latent-NeRF / Sketch-Shape system: a NeRF in Stable Diffusion's latent space, then RGB.

Reference §5.4. The latent stage (``refinement: false``) renders 4 feature channels as latents
and hands them to the guidance as latents (no VAE encoder); the refinement stage
(``refinement: true``) renders RGB through ``sd-latent-adapter`` and the guidance encodes it as
usual. Both weigh DreamFusion's regularisers and, for Sketch-Shape, the guide-shape loss
(:mod:`studio_latentnerf.shape_loss`) on the renderer's samples::

    loss = sum_X lambda_X * loss_X(guidance) + DreamFusion's regularisers
         + lambda_shape * shape_loss(points, density)        (with system.guide_shape)

The guide's fields are computed once per run, when training starts. The latent stage's
validation and test images are decoded by the VAE (loaded alone for ``studio test``): decoded
RGB | opacity; the refinement's are rgb | opacity.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import attrs
import torch

from studio.api import ConfigError, Range
from studio_dreamfusion.latent_decoder import DecodesLatents
from studio_dreamfusion.system import REGULARISERS, DreamFusionSystem, weighted_guidance_losses
from studio_latentnerf.guide_shapes import load_guide_shape
from studio_latentnerf.shape_loss import GuideFields, place_guide_mesh


def _positive_somewhere(value: Any) -> bool:
    """Whether a constant or a schedule ``[start_step, start, end, end_step]`` is ever > 0."""
    if isinstance(value, (list, tuple)):
        ends = value[:2] if len(value) == 3 else value[1:3]
        return any(float(v) > 0 for v in ends)
    return float(value) > 0


class LatentNeRFSystem(DecodesLatents, DreamFusionSystem):
    @attrs.define(kw_only=True)
    class Config(DreamFusionSystem.Config):
        refinement: bool = False
        """The RGB refinement stage (``sd-latent-adapter`` colours, guidance through the VAE);
        false: the latent stage (latents straight to the guidance)."""
        guide_shape: Optional[str] = None
        """Sketch-Shape's guide: a mesh file (.obj, .glb, .ply, ...) or a built-in shape (cube,
        sphere, cylinder, cone, torus, pyramid, teddy, chair); null: Latent-NeRF alone."""
        guide_shape_resolution: Annotated[int, Range(8, 512)] = 128
        """Grid nodes per axis on which the guide's inside indicator and distance are computed
        once per run (read trilinearly at every sample)."""

    #: Besides the guidance's terms.
    scene_terms = (*REGULARISERS, "shape")

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        """A guide that cannot be read, or a shape weight without a guide, is refused before
        anything is created."""
        super().validate_config(cfg, path)
        if cfg.guide_shape:
            load_guide_shape(cfg.guide_shape, f"{path}.guide_shape")
        elif _positive_somewhere(cfg.loss.get("lambda_shape", 0.0)):
            raise ConfigError(
                f"{path}.loss.lambda_shape={cfg.loss['lambda_shape']!r} needs a guide: set "
                f"{path}.guide_shape (a mesh file or a built-in shape such as teddy), or set "
                "lambda_shape to 0."
            )

    def configure(self) -> None:
        super().configure()
        self.guide_fields: Optional[GuideFields] = None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.guide_fields = self.build_guide_fields()

    def build_guide_fields(self) -> Optional[GuideFields]:
        """The placed guide's fields over the renderer's box, on this system's device (None
        without ``guide_shape``)."""
        if not self.cfg.guide_shape:
            return None
        mesh = load_guide_shape(self.cfg.guide_shape, f"{self.config_path}.guide_shape")
        fields = GuideFields.from_mesh(
            place_guide_mesh(mesh.vertices),
            mesh.faces,
            radius=float(self.renderer.cfg.radius),
            resolution=self.cfg.guide_shape_resolution,
        )
        return fields.to(self.device)

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.renderer(**batch)
        guidance_out = self.guidance(
            out["comp_rgb"], self.prompt_utils, **batch, rgb_as_latents=not self.cfg.refinement
        )
        loss, logged = weighted_guidance_losses(guidance_out, self.loss_weight, self.cfg.loss)
        terms = self.regularisers(out)
        shape_weight = self.C(self.cfg.loss.get("lambda_shape", 0.0))
        if self.guide_fields is not None and shape_weight > 0 and "points" in out:
            terms["shape"] = self.guide_fields.loss(
                out["points"], out["density"], out.get("sample_valid")
            )
        for name, value in terms.items():
            loss = loss + value * self.loss_weight(f"lambda_{name}")
            logged[f"loss_{name}"] = value.detach()
        return {"loss": loss, **logged}

    #: no host state of its own (which terms are on is in every graph's key)
    graph_state = DreamFusionSystem.graph_state

    # -- evaluation ----------------------------------------------------------------------------
    def eval_columns(self, batch: dict[str, Any]) -> list[Any]:
        """Latent stage: decoded RGB | opacity. Refinement: rgb | (normal) | opacity."""
        if self.cfg.refinement:
            return super().eval_columns(batch)
        from studio.api import grayscale, rgb

        out = self.renderer(**batch)
        return [rgb(self.decode(out["comp_rgb"][:1])[0]), grayscale(out["opacity"][0])]
