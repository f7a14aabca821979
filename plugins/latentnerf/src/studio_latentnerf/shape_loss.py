"""Sketch-Shape's guide-shape loss (reference §5.4), with the guide's fields on a grid.

The guide mesh is placed as the reference places it (:func:`place_guide_mesh`): centred at its
vertex mean, scaled so that its farthest vertex is 0.7 from the centre, turned from y-up to z-up
(``(x, y, z) -> (x, -z, y)``). For each NeRF sample at ``x`` with density ``sigma``::

    q = [winding_number(x) > 0.5]                  inside the guide (1) or not (0)
    p = clamp(1 - exp(-0.2 * sigma), 0, 1.1)        the NeRF's occupancy
    w = 1 - exp(-d(x)^2 / (2 * 0.3^2))              d: distance to the guide's surface
    loss = sum_x -w * (p log(clamp(q)) + (1 - p) log(clamp(1 - q)))      clamp to [1e-4, 1 - 1e-4]

a sum over samples (not a mean), so near the surface, where the guide is only a sketch, the
NeRF is free (``w`` ~ 0), and far from it the NeRF must be empty outside and full inside.

Winding numbers and squared distances come from libigl (``fast_winding_number``,
``point_mesh_squared_distance``), evaluated once per run on a ``resolution^3`` grid over the scene
box (:class:`GuideFields`); every step reads them at the samples by trilinear interpolation on the
training device (:meth:`GuideFields.lookup`), the indicator as the interpolated 0/1 grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

#: y-up to z-up: rows map (x, y, z) to (x, -z, y).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
GUIDE_RADIUS = 0.7
DISTANCE_SIGMA = 0.3
OCCUPANCY_RATE = 0.2
CLAMP = 1e-4


def place_guide_mesh(vertices: np.ndarray) -> np.ndarray:
    """``vertices [V, 3]`` centred at their mean, scaled to a farthest vertex at 0.7, y-up
    turned to z-up (float64)."""
    v = np.asarray(vertices, dtype=np.float64)
    v = v - v.mean(axis=0)
    v = v * (GUIDE_RADIUS / np.linalg.norm(v, axis=1).max())
    return v @ Y_UP_TO_Z_UP.T


def _arrays(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.ascontiguousarray(vertices, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64),
        np.ascontiguousarray(points, dtype=np.float64),
    )


def winding_numbers(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The mesh's generalised winding number at ``points [N, 3]`` (libigl's fast
    approximation; 1 inside a closed, outward-facing mesh, 0 outside)."""
    import igl

    return igl.fast_winding_number(*_arrays(vertices, faces, points))


def inside_and_squared_distance(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(inside, d2)`` at ``points [N, 3]``: winding number above 0.5 (float 0/1) and the
    squared distance to the mesh, by libigl (float64)."""
    import igl

    v, f, p = _arrays(vertices, faces, points)
    squared, _, _ = igl.point_mesh_squared_distance(p, v, f)
    return (winding_numbers(v, f, p) > 0.5).astype(np.float64), squared


def shape_loss(
    density: torch.Tensor,
    inside: torch.Tensor,
    squared_distance: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The module doc's sum over samples; ``density`` ``[N]`` or ``[N, 1]``, ``inside`` (q, in
    [0, 1]) and ``squared_distance`` of the same shape; ``valid`` (bool, same shape), when
    given, leaves the other samples out (a fixed-capacity render's padding)."""
    p = (1.0 - torch.exp(-OCCUPANCY_RATE * density)).clamp(0.0, 1.1)
    q = inside.to(p.dtype).clamp(CLAMP, 1.0 - CLAMP)
    w = 1.0 - torch.exp(-squared_distance.to(p.dtype) / (2.0 * DISTANCE_SIGMA**2))
    if valid is not None:
        w = w * valid.to(w.dtype)
    return -(w * (p * torch.log(q) + (1.0 - p) * torch.log(1.0 - q))).sum()


@dataclass
class GuideFields:
    """The guide's indicator and squared distance on a ``[R, R, R]`` grid over ``[-radius,
    radius]^3`` (axes z, y, x as ``grid_sample`` reads them)."""

    inside: torch.Tensor
    squared_distance: torch.Tensor
    radius: float

    @classmethod
    def from_mesh(
        cls, vertices: np.ndarray, faces: np.ndarray, radius: float, resolution: int = 128
    ) -> GuideFields:
        """Evaluate the placed guide (``vertices`` already placed) at every grid node."""
        axis = np.linspace(-radius, radius, resolution)
        z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
        points = np.stack([x, y, z], axis=-1).reshape(-1, 3)
        inside, squared = inside_and_squared_distance(vertices, faces, points)
        shape = (resolution,) * 3
        return cls(
            torch.from_numpy(inside.reshape(shape)).float(),
            torch.from_numpy(squared.reshape(shape)).float(),
            radius,
        )

    def to(self, device: torch.device) -> GuideFields:
        return GuideFields(self.inside.to(device), self.squared_distance.to(device), self.radius)

    def lookup(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inside, squared_distance)`` ``[N]`` at ``points [N, 3]`` by trilinear
        interpolation between grid nodes (``align_corners``: the nodes span the box exactly)."""
        grid = torch.stack([self.inside, self.squared_distance])[None]  # [1, 2, R, R, R]
        coords = (points.reshape(1, 1, 1, -1, 3) / self.radius).to(grid.dtype)
        values = F.grid_sample(grid, coords, mode="bilinear", align_corners=True)
        values = values.reshape(2, -1)
        return values[0], values[1]

    def loss(
        self, points: torch.Tensor, density: torch.Tensor, valid: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """:func:`shape_loss` of the NeRF ``density`` at ``points`` against this guide (the
        ``valid`` samples only, when given)."""
        inside, squared = self.lookup(points.detach())
        mask = None if valid is None else valid.reshape(-1)
        return shape_loss(density.reshape(-1), inside, squared, mask)
