"""A system made of registered parts: geometry, material, background, renderer (+ guidance).

The parts are named in the config (``geometry_type: implicit-volume`` with its ``geometry:`` block)
and built through the registry, so any plugin's component can be swapped in. A geometry is
required; material, background and renderer are None when their type is left empty (a stage that
fits a geometry alone). Guidance and prompt
processor are built only by :meth:`load_guidance` (called from ``on_fit_start``), never for test or
export.

``geometry_convert_from`` (a run directory, stage directory or checkpoint file) starts the
geometry from another run's (:mod:`studio.geometry.convert`), once, when the run starts from
scratch; ``geometry_convert_inherit_texture`` also takes its texture networks and
``geometry_convert_override`` changes the source geometry's config first (its
``isosurface_threshold``, for example).
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from studio.registry import get_registry
from studio.systems.base import BaseSystem


def load_component(kind: str, name: str) -> Any:
    """The class (or callable) registered as ``name`` for ``kind`` (``PluginError`` if none)."""
    return get_registry().load(kind, name)


def build_component(
    kind: str, name: str, cfg: dict[str, Any], config_path: str, **kwargs: Any
) -> Any:
    """Instantiate the ``kind`` registered as ``name`` with its config mapping; ``config_path`` is
    where that mapping lives in the run's config (``system.geometry``), for its messages."""
    cls = get_registry().load(kind, name)
    return cls(cfg, config_path=config_path, **kwargs)


def build_guidance(
    cfg: Any, device: Any, config_path: str = "system"
) -> tuple[Optional[Any], Optional[Any]]:
    """``(prompt processor, guidance)`` from ``cfg``'s ``prompt_processor_type``/``guidance_type``
    and their blocks, each ``None`` when its type is empty."""
    prompt_processor = guidance = None
    if cfg.prompt_processor_type:
        prompt_processor = build_component(
            "prompt_processor",
            cfg.prompt_processor_type,
            cfg.prompt_processor,
            f"{config_path}.prompt_processor",
            device=device,
        )
    if cfg.guidance_type:
        guidance = build_component(
            "guidance", cfg.guidance_type, cfg.guidance, f"{config_path}.guidance", device=device
        )
    return prompt_processor, guidance


class BaseLift3DSystem(BaseSystem):
    @attrs.define(kw_only=True)
    class Config(BaseSystem.Config):
        geometry_type: str = ""
        """The registered geometry (e.g. ``implicit-volume``); required."""
        geometry: dict[str, Any] = attrs.Factory(dict)
        """The geometry's config (keys of the ``geometry_type``'s config)."""
        geometry_convert_from: Optional[str] = None
        """Start the geometry from another run's (a run or stage directory, or a checkpoint in
        one), once, when this run starts from scratch without ``weights``; None: fresh."""
        geometry_convert_inherit_texture: bool = False
        """With ``geometry_convert_from``: also copy the source's texture (feature) networks."""
        geometry_convert_override: dict[str, Any] = attrs.Factory(dict)
        """With ``geometry_convert_from``: keys merged into the source run's geometry config
        before converting (e.g. ``isosurface_threshold``)."""
        material_type: str = ""
        """The registered material (e.g. ``diffuse-with-point-light``); empty: none."""
        material: dict[str, Any] = attrs.Factory(dict)
        """The material's config (keys of the ``material_type``'s config)."""
        background_type: str = ""
        """The registered background (e.g. ``neural-environment-map``); empty: none."""
        background: dict[str, Any] = attrs.Factory(dict)
        """The background's config (keys of the ``background_type``'s config)."""
        renderer_type: str = ""
        """The registered renderer (e.g. ``nerf-volume``); empty: none."""
        renderer: dict[str, Any] = attrs.Factory(dict)
        """The renderer's config (keys of the ``renderer_type``'s config)."""
        guidance_type: str = ""
        """The registered guidance (e.g. ``stable-diffusion``); built for training only."""
        guidance: dict[str, Any] = attrs.Factory(dict)
        """The guidance's config (keys of the ``guidance_type``'s config)."""
        prompt_processor_type: str = ""
        """The registered prompt processor (e.g. ``stable-diffusion``); built for training only."""
        prompt_processor: dict[str, Any] = attrs.Factory(dict)
        """The prompt processor's config (keys of the ``prompt_processor_type``'s config)."""

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        if cfg.geometry_convert_from:
            from studio.geometry.convert import check_source

            check_source(cfg.geometry_convert_from, f"{path}.geometry_convert_from")

    def configure(self) -> None:
        cfg = self.cfg
        path = self.config_path
        self.geometry = self.build_geometry()
        self.material = self._optional("material", cfg.material_type, cfg.material)
        self.background = self._optional("background", cfg.background_type, cfg.background)
        self.renderer = None
        if cfg.renderer_type:
            self.renderer = build_component(
                "renderer",
                cfg.renderer_type,
                cfg.renderer,
                f"{path}.renderer",
                geometry=self.geometry,
                material=self.material,
                background=self.background,
            )
        self.guidance: Optional[Any] = None
        self.prompt_processor: Optional[Any] = None

    def _optional(self, kind: str, name: str, cfg: dict[str, Any]) -> Any:
        """The ``kind`` registered as ``name``; None when the config leaves its type empty."""
        if not name:
            return None
        return build_component(kind, name, cfg, f"{self.config_path}.{kind}")

    def build_geometry(self) -> Any:
        """The configured geometry, converted from ``geometry_convert_from`` when the run starts
        from scratch without ``weights`` (the conversion is recorded in ``self.conversion``)."""
        cfg = self.cfg
        path = f"{self.config_path}.geometry"
        if not cfg.geometry_convert_from or self.resumed or cfg.weights:
            return build_component("geometry", cfg.geometry_type, cfg.geometry, path)
        from studio.geometry.convert import convert_geometry

        geometry, self.conversion = convert_geometry(
            get_registry().load("geometry", cfg.geometry_type),
            cfg.geometry,
            source=cfg.geometry_convert_from,
            inherit_texture=cfg.geometry_convert_inherit_texture,
            override=cfg.geometry_convert_override,
            device=self.build_device,
            config_path=path,
        )
        return geometry

    def load_guidance(self) -> None:
        """Build prompt processor and guidance (heavy: diffusion models) on this system's device."""
        self.prompt_processor, self.guidance = build_guidance(
            self.cfg, self.device, self.config_path
        )

    def on_fit_start(self) -> None:
        self.load_guidance()

    # -- evaluation images ---------------------------------------------------------------------
    def eval_columns(self, batch: dict[str, Any]) -> list[Any]:
        """Grid columns for one evaluation view: rgb | normal (when rendered) | opacity."""
        from studio.io.saver import grayscale, rgb

        out = self.renderer(**batch)
        columns = [rgb(out["comp_rgb"][0])]
        if "comp_normal" in out:
            columns.append(rgb(out["comp_normal"][0]))
        columns.append(grayscale(out["opacity"][0]))
        return columns

    def validation_step(self, batch: dict[str, Any], index: int) -> None:
        self.saver.image_grid(self.validation_image_name(index), self.eval_columns(batch))

    def test_step(self, batch: dict[str, Any], index: int) -> None:
        self.saver.image_grid(self.test_image_name(index), self.eval_columns(batch))
