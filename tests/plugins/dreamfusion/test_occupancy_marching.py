"""Occupancy-grid marching with one host sync: the compaction on any device, the samples
against nerfacc's own wrapper on CUDA."""

from __future__ import annotations

import pytest
import torch

from studio_dreamfusion.renderers.occupancy_marching import compact
from tests.plugins.dreamfusion.marching_scene import lumpy_ball, nerfacc_scene


@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
def test_compact_equals_boolean_selection(density):
    generator = torch.Generator().manual_seed(int(density * 100))
    values = torch.randn(5000, generator=generator)
    mask = torch.rand(5000, generator=generator) < density
    expected = values[mask]
    got = compact(values, mask, int(mask.sum()))
    assert got.shape == expected.shape
    assert torch.equal(got, expected)


def test_compact_of_nothing_is_empty():
    assert compact(torch.empty(0), torch.empty(0, dtype=torch.bool), 0).shape == (0,)


@pytest.mark.gpu
@pytest.mark.parametrize("stratified", [False, True])
def test_march_gives_the_samples_of_nerfacc_sampling(stratified):
    """Same rays, grid and density: the same kept samples as ``OccGridEstimator.sampling``
    (which waits for the GPU six times per call instead of once)."""
    from studio_dreamfusion.renderers.occupancy_marching import march

    estimator, rays_o, rays_d = nerfacc_scene()

    def sigma_fn(t_starts, t_ends, ray_indices):
        t_mid = (t_starts + t_ends)[:, None] / 2.0
        return lumpy_ball(rays_o[ray_indices] + rays_d[ray_indices] * t_mid)

    options = dict(near_plane=0.0, far_plane=1e10, stratified=stratified, early_stop_eps=1e-4)
    torch.manual_seed(1)
    ours = march(
        estimator,
        rays_o,
        rays_d,
        step_size=0.007,
        sigma_fn=sigma_fn,
        alpha_threshold=0.01,
        **options,
    )
    torch.manual_seed(1)
    theirs = estimator.sampling(
        rays_o, rays_d, sigma_fn=sigma_fn, render_step_size=0.007, alpha_thre=0.01, **options
    )
    assert ours[0].numel() > 10000  # the check sees real work
    every_sample = march(
        estimator, rays_o, rays_d, step_size=0.007, sigma_fn=None, alpha_threshold=0.0, **options
    )
    assert ours[0].numel() < every_sample[0].numel()  # and the thresholds removed some
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
