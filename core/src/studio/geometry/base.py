"""The implicit-geometry contract every NeRF/SDF geometry follows.

Points are world coordinates inside the bounding box ``[-radius, radius]^3``. A geometry returns
per-point ``density`` (or ``sdf``), ``features`` and, when asked, ``normal``; ``forward_field``
returns the scalar field used for isosurface extraction and ``forward_level`` turns it into a
level set that is positive outside the surface.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from studio.base import BaseModule


def contract_to_unit_cube(points: torch.Tensor, radius: float) -> torch.Tensor:
    """Map ``[-radius, radius]^3`` to ``[0, 1]^3`` (encodings take inputs in the unit cube)."""
    return (points + radius) / (2.0 * radius)


class BaseImplicitGeometry(BaseModule):
    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        radius: float = 1.0

    config_path = "system.geometry"

    def configure(self) -> None:
        r = self.cfg.radius
        self.register_buffer(
            "bbox", torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32), persistent=False
        )

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def forward_density(self, points: torch.Tensor) -> torch.Tensor:
        """Density ``[N, 1]`` only (cheap path for occupancy grids and isosurfaces)."""
        raise NotImplementedError

    def forward_field(self, points: torch.Tensor) -> torch.Tensor:
        """The scalar field whose level set is the surface (density for volumes)."""
        return self.forward_density(points)

    def forward_level(self, field: torch.Tensor, threshold: float) -> torch.Tensor:
        """Level values, positive outside: ``-(density - threshold)`` for density fields."""
        return -(field - threshold)
