"""A system made of registered parts: geometry, material, background, renderer (+ guidance).

The parts are named in the config (``geometry_type: implicit-volume`` with its ``geometry:`` block)
and built through the registry, so any plugin's component can be swapped in. Guidance and prompt
processor are built only by :meth:`load_guidance` (called from ``on_fit_start``), never for test or
export.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from studio.registry import get_registry
from studio.systems.base import BaseSystem


def build_component(kind: str, name: str, cfg: dict[str, Any], **kwargs: Any) -> Any:
    """Instantiate the ``kind`` registered as ``name`` with its config mapping."""
    cls = get_registry().load(kind, name)
    return cls(cfg, **kwargs)


def build_guidance(cfg: Any, device: Any) -> tuple[Optional[Any], Optional[Any]]:
    """``(prompt processor, guidance)`` from ``cfg``'s ``prompt_processor_type``/``guidance_type``
    and their blocks, each ``None`` when its type is empty."""
    prompt_processor = guidance = None
    if cfg.prompt_processor_type:
        prompt_processor = build_component(
            "prompt_processor", cfg.prompt_processor_type, cfg.prompt_processor, device=device
        )
    if cfg.guidance_type:
        guidance = build_component("guidance", cfg.guidance_type, cfg.guidance, device=device)
    return prompt_processor, guidance


class BaseLift3DSystem(BaseSystem):
    @attrs.define(kw_only=True)
    class Config(BaseSystem.Config):
        geometry_type: str = ""
        geometry: dict[str, Any] = attrs.Factory(dict)
        material_type: str = ""
        material: dict[str, Any] = attrs.Factory(dict)
        background_type: str = ""
        background: dict[str, Any] = attrs.Factory(dict)
        renderer_type: str = ""
        renderer: dict[str, Any] = attrs.Factory(dict)
        guidance_type: str = ""
        guidance: dict[str, Any] = attrs.Factory(dict)
        prompt_processor_type: str = ""
        prompt_processor: dict[str, Any] = attrs.Factory(dict)

    def configure(self) -> None:
        cfg = self.cfg
        self.geometry = build_component("geometry", cfg.geometry_type, cfg.geometry)
        self.material = build_component("material", cfg.material_type, cfg.material)
        self.background = build_component("background", cfg.background_type, cfg.background)
        self.renderer = build_component(
            "renderer",
            cfg.renderer_type,
            cfg.renderer,
            geometry=self.geometry,
            material=self.material,
            background=self.background,
        )
        self.guidance: Optional[Any] = None
        self.prompt_processor: Optional[Any] = None

    def load_guidance(self) -> None:
        """Build prompt processor and guidance (heavy: diffusion models) on this system's device."""
        self.prompt_processor, self.guidance = build_guidance(self.cfg, self.device)

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
