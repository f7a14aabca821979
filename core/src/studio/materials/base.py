"""Materials turn geometry features (+ shading inputs) into colours.

``forward(features, viewdirs=..., positions=..., light_positions=..., shading_normal=..., **kw)``
receives per-sample tensors ``[N, ...]`` and returns colours ``[N, C]``. ``requires_normal`` tells
the renderer to ask the geometry for normals.
"""

from __future__ import annotations

from typing import Any

import torch

from studio.base import BaseModule


class BaseMaterial(BaseModule):
    requires_normal: bool = False
    config_path = "system.material"

    def forward(self, features: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def export(self, features: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Texture channels for baking (default: none)."""
        return {}
