"""Analytic shapes for isosurface tests: signed distances, outward directions, surface samples."""

from __future__ import annotations

import math

import numpy as np
import torch

SPHERE_RADIUS = 0.5
TORUS_R, TORUS_r = 0.5, 0.2


def sphere_sdf(points: torch.Tensor, radius: float = SPHERE_RADIUS, centre=(0.0, 0.0, 0.0)):
    """Signed distance ``[N, 1]`` (negative inside)."""
    c = torch.tensor(centre, dtype=points.dtype, device=points.device)
    return (points - c).norm(dim=-1, keepdim=True) - radius


def torus_sdf(points: torch.Tensor) -> torch.Tensor:
    """Torus around the z axis, tube centre radius ``TORUS_R``, tube radius ``TORUS_r``."""
    ring = points[:, :2].norm(dim=-1) - TORUS_R
    return torch.stack([ring, points[:, 2]], dim=-1).norm(dim=-1, keepdim=True) - TORUS_r


def sphere_outward(points: torch.Tensor) -> torch.Tensor:
    return points


def torus_outward(points: torch.Tensor) -> torch.Tensor:
    """Direction from the nearest point of the tube's centre circle."""
    xy = points[:, :2]
    core = TORUS_R * xy / xy.norm(dim=-1, keepdim=True)
    return points - torch.cat([core, torch.zeros_like(points[:, :1])], dim=-1)


def sphere_samples(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return SPHERE_RADIUS * x / x.norm(dim=-1, keepdim=True)


def torus_samples(n: int, seed: int = 0) -> torch.Tensor:
    """Uniform by area: angles uniform, accepted with probability ``(R + r cos v) / (R + r)``."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(o) for o in out) < n:
        u, v, w = rng.uniform(0, 2 * math.pi, (3, 4 * n))
        keep = w / (2 * math.pi) < (TORUS_R + TORUS_r * np.cos(v)) / (TORUS_R + TORUS_r)
        u, v = u[keep], v[keep]
        ring = TORUS_R + TORUS_r * np.cos(v)
        out.append(np.stack([ring * np.cos(u), ring * np.sin(u), TORUS_r * np.sin(v)], -1))
    return torch.from_numpy(np.concatenate(out)[:n])


def nearest_distance(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each point of ``a`` the distance to the nearest point of ``b``."""
    return torch.cat([torch.cdist(part, b).min(dim=1).values for part in a.split(chunk)])


def chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric Chamfer distance: mean of the two mean nearest-neighbour distances."""
    return 0.5 * float(nearest_distance(a, b).mean() + nearest_distance(b, a).mean())


def mesh_samples(mesh, n: int, seed: int = 0) -> torch.Tensor:
    """Area-weighted uniform samples on a :class:`studio.mesh.Mesh` (float64)."""
    v = mesh.v_pos.detach().double()
    tri = v[mesh.t_pos_idx]
    area = 0.5 * torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1)
    g = torch.Generator().manual_seed(seed)
    face = torch.multinomial(area, n, replacement=True, generator=g)
    r1, r2 = torch.rand(2, n, 1, generator=g, dtype=torch.float64)
    s = r1.sqrt()
    t = tri[face]
    return (1 - s) * t[:, 0] + s * (1 - r2) * t[:, 1] + s * r2 * t[:, 2]
