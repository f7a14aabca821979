"""An independent float64 reference for rasterizer tests: Moller-Trumbore ray casting.

Every pixel's ray is unprojected with the inverse of the model-view-projection matrix (pixel
centres at NDC ``x = 2 (j + 0.5) / W - 1``, ``y = 2 (i + 0.5) / H - 1``), intersected with every
triangle, and the nearest hit whose clip-space ``z/w`` lies in ``[-1, 1]`` is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from studio.data import cameras as cam


@dataclass
class RayCast:
    face: torch.Tensor  # [H, W] long, -1 where no hit
    bary: torch.Tensor  # [H, W, 3] float64 weights of vertices 0, 1, 2 of the hit triangle
    depth: torch.Tensor  # [H, W] float64 clip-space z/w of the hit point


def make_cameras(
    positions: torch.Tensor, fovy_deg: float = 40.0, aspect: float = 1.0, up=(0.0, 0.0, 1.0)
) -> torch.Tensor:
    """``mvp [B, 4, 4]`` (float64) of cameras at ``positions [B, 3]`` looking at the origin."""
    positions = positions.double()
    c2w = cam.look_at(positions, torch.zeros_like(positions), torch.tensor(up).double())
    fovy = torch.full((positions.shape[0],), fovy_deg * math.pi / 180, dtype=torch.float64)
    return cam.mvp_matrix(c2w, cam.projection_matrix(fovy, aspect))


def to_clip(vertices: torch.Tensor, mvp: torch.Tensor) -> torch.Tensor:
    """``[B, V, 4]`` clip-space positions of world ``vertices [V, 3]``."""
    homogeneous = torch.cat([vertices, torch.ones_like(vertices[:, :1])], dim=-1)
    return homogeneous.to(mvp.dtype) @ mvp.transpose(1, 2)


def pixel_rays(mvp: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space ray origins and directions ``[H*W, 3]`` through the pixel centres of one mvp."""
    inverse = torch.linalg.inv(mvp.double())
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    x = (2 * cols + 1) / width - 1
    y = (2 * rows + 1) / height - 1
    ones = torch.ones_like(x)
    ends = []
    for z in (-1.0, 1.0):
        ndc = torch.stack([x, y, z * ones, ones], dim=-1).reshape(-1, 4)
        world = ndc @ inverse.T
        ends.append(world[:, :3] / world[:, 3:])
    return ends[0], ends[1] - ends[0]


def ray_cast(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    mvp: torch.Tensor,
    height: int,
    width: int,
) -> RayCast:
    """Nearest in-frustum hit per pixel of the mesh ``(vertices [V, 3], faces [F, 3])``."""
    vertices, mvp = vertices.double(), mvp.double()
    origins, directions = pixel_rays(mvp, height, width)
    tri = vertices[faces.long()]  # [F, 3, 3]
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    n_pixels = origins.shape[0]
    chunk = max(1, 2_000_000 // len(faces))
    face = torch.full((n_pixels,), -1, dtype=torch.long)
    bary = torch.zeros(n_pixels, 3, dtype=torch.float64)
    depth = torch.zeros(n_pixels, dtype=torch.float64)
    for start in range(0, n_pixels, chunk):
        o = origins[start : start + chunk, None]  # [P, 1, 3]
        d = directions[start : start + chunk, None]
        p = torch.cross(d.expand(-1, len(faces), -1), e2[None].expand(o.shape[0], -1, -1), dim=-1)
        det = (e1[None] * p).sum(-1)
        safe = torch.where(det.abs() > 1e-14, det, torch.ones_like(det))
        s = o - v0[None]
        u = (s * p).sum(-1) / safe
        q = torch.cross(s, e1[None].expand_as(s), dim=-1)
        v = (d * q).sum(-1) / safe
        t = (e2[None] * q).sum(-1) / safe
        hit = (det.abs() > 1e-14) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        point = o + t[..., None] * d  # [P, F, 3]
        clip = torch.cat([point, torch.ones_like(point[..., :1])], -1) @ mvp.T
        z_over_w = clip[..., 2] / clip[..., 3]
        hit &= (clip[..., 3] > 0) & (z_over_w >= -1) & (z_over_w <= 1)
        masked = torch.where(hit, z_over_w, torch.full_like(z_over_w, math.inf))
        best, index = masked.min(dim=1)
        found = torch.isfinite(best)
        rows = torch.arange(o.shape[0])
        sl = slice(start, start + o.shape[0])
        face[sl] = torch.where(found, index, -1)
        bu, bv = u[rows, index], v[rows, index]
        bary[sl] = torch.stack([1 - bu - bv, bu, bv], dim=-1) * found[:, None]
        depth[sl] = torch.where(found, best, 0.0)
    return RayCast(
        face.reshape(height, width),
        bary.reshape(height, width, 3),
        depth.reshape(height, width),
    )


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union
