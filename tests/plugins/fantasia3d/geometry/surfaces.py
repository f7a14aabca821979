"""Shared by the ``implicit-sdf`` tests: a CPU-sized hash grid, geometry factories and surface
distances."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import trimesh

from studio_fantasia3d.geometry.implicit_sdf import ImplicitSDF

#: The reference's hash grid cut from 16 levels / 2^19 entries to 8 levels / 2^15 entries (same
#: base resolution 16 and growth 1.4473, so the finest level is 16 * 1.4473^7 ~ 213 cells): one
#: 10000-point Adam step takes ~0.04 s on one CPU core instead of ~0.25 s.
SMALL_GRID: dict[str, Any] = {
    "otype": "HashGrid",
    "n_levels": 8,
    "n_features_per_level": 2,
    "log2_hashmap_size": 15,
    "base_resolution": 16,
    "per_level_scale": 1.447269237440378,
}
#: Even smaller, for tests that only exercise plumbing.
TINY_GRID: dict[str, Any] = {
    "otype": "HashGrid",
    "n_levels": 4,
    "n_features_per_level": 2,
    "log2_hashmap_size": 12,
    "base_resolution": 4,
    "per_level_scale": 1.5,
}
BOX_SIDE = 2.0  # the default box [-1, 1]^3
SPHERE_RADIUS = 0.5  # Fantasia3D's preset
ELLIPSOID_RADII = [0.3, 0.3, 0.8]  # the reference config's documented alternative


def make_sdf(grid: dict[str, Any] = TINY_GRID, seed: int = 0, **config: Any) -> ImplicitSDF:
    """An ``implicit-sdf`` with ``config`` and the hash grid ``grid``, seeded."""
    torch.manual_seed(seed)
    return ImplicitSDF({"pos_encoding_config": grid, **config})


def sphere_points(n: int, radius: float, seed: int = 0) -> torch.Tensor:
    """``n`` points uniformly on the sphere of ``radius`` about the origin."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 3, generator=g)
    return radius * p / p.norm(dim=-1, keepdim=True)


def box_points(n: int, radius: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2.0 - 1.0) * radius


def nearest_distance(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """For each point of ``a`` the distance to the nearest point of ``b``."""
    return torch.cat([torch.cdist(part, b).min(dim=1).values for part in a.split(chunk)])


def surface_samples(vertices: Any, faces: Any, n: int = 5000, seed: int = 0) -> torch.Tensor:
    """``n`` points sampled uniformly by area on the triangle mesh ``(vertices, faces)``."""
    mesh = trimesh.Trimesh(np.asarray(vertices), np.asarray(faces), process=False)
    points, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return torch.as_tensor(np.asarray(points), dtype=torch.float32)


def chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric Chamfer distance of two surface samples: the mean of the two mean
    nearest-neighbour distances (world units)."""
    return 0.5 * float(nearest_distance(a, b).mean() + nearest_distance(b, a).mean())


def fit(shape: str, params, **config) -> ImplicitSDF:
    """An ``implicit-sdf`` on :data:`SMALL_GRID` after ``initialize_shape()`` with the
    reference's settings (1000 Adam steps, 10000 points per step, lr 1e-3) unless ``config``
    says otherwise; prints the CPU time."""
    geometry = make_sdf(
        SMALL_GRID,
        shape_init=shape,
        shape_init_params=params,
        n_feature_dims=0,
        isosurface_resolution=32,
        **config,
    )
    start = time.perf_counter()
    geometry.initialize_shape()
    print(f"initialize_shape({shape}) took {time.perf_counter() - start:.1f} s on one CPU thread")
    return geometry.eval()
