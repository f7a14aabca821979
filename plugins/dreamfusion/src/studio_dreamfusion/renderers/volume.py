"""Ray sampling and volume-rendering maths in plain PyTorch (the always-available path).

Samples are *packed*: one flat list of samples with ``ray_indices`` naming their ray, the layout
nerfacc uses, so compositing and accumulation serve both backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RaySamples:
    """Packed samples: ``ray_indices [S]``, ``t_starts [S]``, ``t_ends [S]``, ``t_points [S]``.

    ``samples_per_ray`` is set when every ray has that many consecutive samples (the torch
    paths); ``valid`` (bool ``[S]``), when set, marks the samples that exist: the others only pad
    the rays to equal length and are never shaded.
    """

    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor
    t_points: torch.Tensor
    samples_per_ray: int | None = None
    valid: torch.Tensor | None = None


def ray_aabb(
    rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry/exit distances ``[R]`` of rays through the box ``aabb [2, 3]`` (slab method).

    Rays that miss get ``near == far``.
    """
    inv = 1.0 / torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    t0 = (aabb[0] - rays_o) * inv
    t1 = (aabb[1] - rays_o) * inv
    near = torch.minimum(t0, t1).amax(dim=-1)
    far = torch.maximum(t0, t1).amin(dim=-1)
    near = near.clamp(min=0.0)
    far = torch.maximum(far, near)
    return near, far


def uniform_samples(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    aabb: torch.Tensor,
    n_samples: int,
    stratified: bool,
    near_plane: float = 0.0,
    far_plane: float = 1e10,
) -> RaySamples:
    """``n_samples`` equal intervals per ray inside the box; the sample point of each interval is
    its midpoint, or a uniformly random point in it when ``stratified``."""
    near, far = ray_aabb(rays_o, rays_d, aabb)
    near = near.clamp(min=near_plane)
    far = torch.maximum(far.clamp(max=far_plane), near)
    n_rays = rays_o.shape[0]
    steps = torch.arange(n_samples, device=rays_o.device, dtype=rays_o.dtype)
    width = ((far - near) / n_samples)[:, None]
    t_starts = near[:, None] + steps[None, :] * width
    t_ends = t_starts + width
    offset = torch.rand_like(t_starts) if stratified else torch.full_like(t_starts, 0.5)
    t_points = t_starts + offset * width
    ray_indices = torch.arange(n_rays, device=rays_o.device).repeat_interleave(n_samples)
    return RaySamples(
        ray_indices, t_starts.reshape(-1), t_ends.reshape(-1), t_points.reshape(-1), n_samples
    )


def marching_samples(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    aabb: torch.Tensor,
    step_size: float,
    stratified: bool,
    near_plane: float = 0.0,
    far_plane: float = 1e10,
    count: int | None = None,
) -> RaySamples:
    """nerfacc's dense marching (``OccGridEstimator.sampling`` with every cell occupied,
    ``cone_angle=0``) in plain PyTorch.

    Contract: each ray steps from ``t0 = near_plane`` (plus ``U(0, 1) * step_size`` when
    ``stratified``) in intervals ``[t0 + k * step, t0 + (k + 1) * step]``; an interval is a sample
    when its midpoint lies in ``[entry, exit)`` of the box (clipped to ``t0`` and the far plane),
    and its point is that midpoint. Rays are padded to the longest chord's sample count; the
    padding is marked invalid (``valid``).
    """
    entry, far = ray_aabb(rays_o, rays_d, aabb)
    start = torch.full_like(entry, near_plane)
    if stratified:
        start = start + torch.rand_like(start) * step_size
    near = torch.maximum(entry, start)  # nerfacc clips the box to the jittered near plane
    far = torch.minimum(far, torch.full_like(far, far_plane))
    if count is None:
        count = steps_per_ray(float((aabb[1] - aabb[0]).norm()), step_size)
    first = torch.ceil((near - start) / step_size - 0.5).clamp(min=0.0)
    steps = first[:, None] + torch.arange(count, device=rays_o.device, dtype=rays_o.dtype)
    t_starts = start[:, None] + steps * step_size
    t_ends = t_starts + step_size
    t_points = t_starts + 0.5 * step_size
    valid = (t_points >= near[:, None]) & (t_points < far[:, None])
    ray_indices = torch.arange(rays_o.shape[0], device=rays_o.device).repeat_interleave(count)
    return RaySamples(
        ray_indices,
        t_starts.reshape(-1),
        t_ends.reshape(-1),
        t_points.reshape(-1),
        count,
        valid.reshape(-1),
    )


def steps_per_ray(diagonal: float, step_size: float) -> int:
    """Marching steps per ray of :func:`marching_samples` through a box of this ``diagonal``:
    the midpoints the diagonal can hold, plus one."""
    return int(diagonal / step_size) + 2


def weights_from_density_uniform(
    density: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor, n_rays: int, n_samples: int
) -> torch.Tensor:
    """Volume-rendering weights ``w_i = T_i (1 - exp(-sigma_i delta_i))``, ``T_i = exp(-sum_{j<i}
    sigma_j delta_j)`` for rays that all have ``n_samples`` consecutive samples; ``[S]``."""
    sigma_delta, in_front = _optical_depths(density, t_starts, t_ends, n_rays, n_samples)
    alpha = 1.0 - torch.exp(-sigma_delta)
    return (torch.exp(-in_front) * alpha).reshape(-1)


def _optical_depths(
    density: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor, n_rays: int, n_samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n_rays, n_samples]`` each: a sample's own optical depth ``sigma_i delta_i`` and the
    depth in front of it, ``sum_{j<i} sigma_j delta_j`` (exclusive prefix sum)."""
    sigma_delta = density.reshape(n_rays, n_samples) * (t_ends - t_starts).reshape(
        n_rays, n_samples
    )
    return sigma_delta, torch.cumsum(sigma_delta, dim=-1) - sigma_delta


def visible_uniform(
    density: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    n_rays: int,
    n_samples: int,
    min_alpha: float,
    early_stop_eps: float,
    step_size: float,
) -> torch.Tensor:
    """Which samples nerfacc's ``OccGridEstimator.sampling`` keeps (bool ``[S]``, no gradient).

    A sample is kept when its alpha at the marching step ``step_size``, ``1 - exp(-sigma *
    step_size)``, is at least ``min_alpha`` (nerfacc's ``alpha_thre``; measured at the fixed step
    so the density threshold is the nerfacc path's whatever this ray's interval length), and the
    transmittance in front of it, over the actual intervals, is at least ``early_stop_eps``.
    ``0`` switches either test off. Rays all have ``n_samples`` consecutive samples.
    """
    with torch.no_grad():
        sigma = density.detach().reshape(n_rays, n_samples)
        keep = torch.ones_like(sigma, dtype=torch.bool)
        if min_alpha > 0.0:
            keep &= 1.0 - torch.exp(-sigma * step_size) >= min_alpha
        if early_stop_eps > 0.0:
            _, in_front = _optical_depths(sigma, t_starts, t_ends, n_rays, n_samples)
            keep &= torch.exp(-in_front) >= early_stop_eps
        return keep.reshape(-1)


def accumulate(
    values: torch.Tensor, weights: torch.Tensor, ray_indices: torch.Tensor, n_rays: int
) -> torch.Tensor:
    """``sum_i w_i v_i`` per ray; ``values [S, C]`` (or ``None`` meaning 1), result ``[n_rays, C]``."""
    weighted = weights[:, None] * values
    out = torch.zeros(n_rays, weighted.shape[-1], device=weights.device, dtype=weighted.dtype)
    return out.index_add_(0, ray_indices, weighted)
