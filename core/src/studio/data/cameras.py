"""Camera math shared by data modules and renderers (OpenGL convention, z up, camera looks -z)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ray_directions(
    height: int,
    width: int,
    focal: float | torch.Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Camera-space directions ``[H, W, 3]`` through pixel centres (unit focal scaled by ``focal``)."""
    j, i = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack(
        [(i - width / 2) / focal, -(j - height / 2) / focal, -torch.ones_like(i)], dim=-1
    )


def look_at(position: torch.Tensor, center: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Camera-to-world ``[B, 4, 4]``: columns right, up, -lookat, position.

    When the view direction is (anti)parallel to ``up`` (a camera straight above or below the
    centre) the frame is the limit reached from the +x side of the up axis, so it stays a rotation.
    """
    lookat = F.normalize(center - position, dim=-1)
    up = up.expand_as(lookat)
    right = torch.cross(lookat, up, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) <= 1e-6 * up.norm(dim=-1, keepdim=True)
    # Always computed (no host sync on an accelerator): the fallback "up" is the axis
    # perpendicular to up nearest +x (+y where up is along x), signed like the +x-side limit.
    up_dir = F.normalize(up, dim=-1)
    axis = torch.zeros_like(up_dir)
    axis[..., 0] = 1.0
    axis = torch.where(up_dir[..., :1].abs() > 0.9, torch.roll(axis, 1, dims=-1), axis)
    perpendicular = F.normalize(axis - (axis * up_dir).sum(-1, keepdim=True) * up_dir, dim=-1)
    sign = torch.where((lookat * up_dir).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(lookat)
    right = torch.where(degenerate, torch.cross(lookat, sign * perpendicular, dim=-1), right)
    right = F.normalize(right, dim=-1)
    true_up = F.normalize(torch.cross(right, lookat, dim=-1), dim=-1)
    c2w = torch.zeros(*position.shape[:-1], 4, 4, dtype=position.dtype, device=position.device)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = true_up
    c2w[..., :3, 2] = -lookat
    c2w[..., :3, 3] = position
    c2w[..., 3, 3] = 1.0
    return c2w


def projection_matrix(
    fovy: torch.Tensor, aspect: float, near: float = 0.01, far: float = 100.0
) -> torch.Tensor:
    """OpenGL perspective ``[B, 4, 4]`` with y flipped (image row 0 at the top)."""
    proj = torch.zeros(fovy.shape[0], 4, 4, dtype=fovy.dtype, device=fovy.device)
    tan_half = torch.tan(fovy / 2)
    proj[:, 0, 0] = 1.0 / (tan_half * aspect)
    proj[:, 1, 1] = -1.0 / tan_half
    proj[:, 2, 2] = -(far + near) / (far - near)
    proj[:, 2, 3] = -2.0 * far * near / (far - near)
    proj[:, 3, 2] = -1.0
    return proj


def mvp_matrix(c2w: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """``proj @ world_to_camera`` with the inverse built from the rotation transpose."""
    w2c = torch.zeros_like(c2w)
    rot_t = c2w[:, :3, :3].transpose(1, 2)
    w2c[:, :3, :3] = rot_t
    w2c[:, :3, 3:] = -rot_t @ c2w[:, :3, 3:]
    w2c[:, 3, 3] = 1.0
    return proj @ w2c


def world_rays(
    directions: torch.Tensor, c2w: torch.Tensor, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays ``(origins, directions)`` ``[B, H, W, 3]`` for camera-space ``directions [B, H, W, 3]``."""
    rays_d = (directions[..., None, :] * c2w[:, None, None, :3, :3]).sum(-1)
    if normalize:
        rays_d = F.normalize(rays_d, dim=-1)
    rays_o = c2w[:, None, None, :3, 3].expand_as(rays_d)
    return rays_o, rays_d


def spherical_to_position(
    elevation: torch.Tensor, azimuth: torch.Tensor, distance: torch.Tensor
) -> torch.Tensor:
    """Radians in, positions ``[B, 3]`` out (azimuth from +x toward +y, z up)."""
    return torch.stack(
        [
            distance * torch.cos(elevation) * torch.cos(azimuth),
            distance * torch.cos(elevation) * torch.sin(azimuth),
            distance * torch.sin(elevation),
        ],
        dim=-1,
    )


def focal_from_fovy(height: int, fovy: torch.Tensor) -> torch.Tensor:
    return 0.5 * height / torch.tan(0.5 * fovy)


DEG = math.pi / 180.0
