"""The scene the marching tests share: a lumpy ball in a haze, rays aimed at it from a sphere."""

from __future__ import annotations

from typing import Any

import torch


def lumpy_ball(points: torch.Tensor) -> torch.Tensor:
    """Density ``[N]``: a soft ball with a lumpy surface and a faint haze around it."""
    radius = points.norm(dim=-1) + 0.05 * torch.sin(9.0 * points).sum(-1)
    return 40.0 * torch.sigmoid((0.6 - radius) * 30.0) + 0.02


def rays_at_the_ball(
    n_rays: int, generator: torch.Generator | None = None, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rays_o, rays_d)`` ``[n_rays, 3]``: origins at distance 2.5, aimed near the centre."""
    rays_o = torch.randn(n_rays, 3, generator=generator).to(device)
    rays_o = 2.5 * rays_o / rays_o.norm(dim=-1, keepdim=True)
    jitter = 0.4 * torch.randn(n_rays, 3, generator=generator).to(device)
    return rays_o, torch.nn.functional.normalize(-rays_o + jitter, dim=-1)


def nerfacc_scene(step_size: float = 0.007) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """``(estimator, rays_o, rays_d)`` on CUDA: nerfacc's 32^3 grid over [-1, 1]^3 filled from
    the ball at ``step_size``, and 3000 rays (seeded)."""
    import nerfacc

    torch.manual_seed(0)
    estimator = nerfacc.OccGridEstimator(roi_aabb=[-1.0] * 3 + [1.0] * 3, resolution=32).cuda()
    occupancy = lambda x: lumpy_ball(x)[:, None] * step_size  # noqa: E731
    estimator._update(step=0, occ_eval_fn=occupancy, occ_thre=0.01)
    return (estimator, *rays_at_the_ball(3000, device="cuda"))
