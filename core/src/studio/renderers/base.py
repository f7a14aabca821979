"""Renderers turn a camera batch into images using a geometry, a material and a background.

The three parts are owned by the system (they are its sub-modules and are checkpointed there); a
renderer only *refers* to them, so they are not registered twice in the state dict.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import torch

from studio.base import BaseModule


class _Parts:
    """Plain holder so the parts are not sub-modules of the renderer."""

    def __init__(self, geometry: Any, material: Any, background: Any):
        self.geometry = geometry
        self.material = material
        self.background = background


class BaseRenderer(BaseModule):
    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        radius: float = 1.0
        """Half the side of the scene box ``[-radius, radius]^3`` (match the geometry's radius)."""

    config_path = "system.renderer"

    def __init__(
        self,
        cfg: Any = None,
        *,
        geometry: Any,
        material: Any,
        background: Any,
        config_path: Optional[str] = None,
    ):
        self._parts = _Parts(geometry, material, background)
        super().__init__(cfg, config_path=config_path)
        r = self.cfg.radius
        self.register_buffer(
            "bbox", torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32), persistent=False
        )

    @property
    def geometry(self) -> Any:
        return self._parts.geometry

    @property
    def material(self) -> Any:
        return self._parts.material

    @property
    def background(self) -> Any:
        return self._parts.background

    def forward(self, **batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError
