"""Occupancy-grid ray marching with one host sync (CUDA, nerfacc kernels).

Same samples as ``nerfacc.OccGridEstimator.sampling`` (its marching kernel, its transmittance
and alpha thresholds), but nerfacc's Python wrapper waits for the GPU six times per call: two
boolean-mask selections of the interval edges, ``occs.mean().item()`` and three more mask
selections of the visible samples. Here the edges are compacted with a prefix sum and the alpha
threshold stays on the GPU, so the only wait is the one that sizes the visible samples. In a
launch-bound training step every wait leaves the GPU idle while the host catches up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from studio_dreamfusion.renderers.capacity_marching import compact_slots

SigmaFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def compact(values: torch.Tensor, mask: torch.Tensor, count: int) -> torch.Tensor:
    """``values[mask]`` for a 1-D ``mask`` with exactly ``count`` true entries, without a host
    sync: the positions of the selected entries (:func:`capacity_marching.compact_slots`, a
    prefix sum ranks them), then a gather."""
    slots, _ = compact_slots(mask, count)
    return values[slots]


def march(
    estimator: Any,
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    *,
    step_size: float,
    near_plane: float,
    far_plane: float,
    stratified: bool,
    sigma_fn: SigmaFn | None,
    alpha_threshold: float,
    early_stop_eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ray_indices, t_starts, t_ends)`` of the samples ``estimator`` (a nerfacc
    ``OccGridEstimator``) keeps along the rays ``[N, 3]``.

    Contract (nerfacc's ``sampling`` with ``cone_angle=0``): march with a fixed ``step_size``
    through the occupied cells between the near and far planes (the near plane jittered by up
    to one step when ``stratified``); with ``sigma_fn`` given, drop the samples whose
    transmittance is below ``early_stop_eps`` or whose alpha is below
    ``min(alpha_threshold, mean occupancy of the grid)``.
    """
    from nerfacc.grid import traverse_grids
    from nerfacc.volrend import render_transmittance_from_density

    near = torch.full_like(rays_o[:, 0], near_plane)
    far = torch.full_like(rays_o[:, 0], far_plane)
    if stratified:
        near = near + torch.rand_like(near) * step_size
    intervals, samples, _ = traverse_grids(
        rays_o,
        rays_d,
        estimator.binaries,
        estimator.aabbs,
        near_planes=near,
        far_planes=far,
        step_size=step_size,
        cone_angle=0.0,
    )
    ray_indices = samples.ray_indices
    count = ray_indices.shape[0]
    t_starts = compact(intervals.vals, intervals.is_left, count)
    t_ends = compact(intervals.vals, intervals.is_right, count)
    if sigma_fn is None or count == 0 or (alpha_threshold <= 0.0 and early_stop_eps <= 0.0):
        return ray_indices, t_starts, t_ends
    sigmas = sigma_fn(t_starts, t_ends, ray_indices)
    transmittance, alphas = render_transmittance_from_density(
        t_starts, t_ends, sigmas, packed_info=samples.packed_info
    )
    visible = transmittance >= early_stop_eps
    if alpha_threshold > 0.0:
        threshold = estimator.occs.mean().clamp(max=alpha_threshold)
        visible = visible & (alphas >= threshold)
    kept = visible.nonzero().squeeze(1)  # the one host sync: how many samples remain
    return ray_indices[kept], t_starts[kept], t_ends[kept]
