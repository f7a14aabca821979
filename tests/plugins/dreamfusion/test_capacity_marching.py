"""Fixed-capacity marching (no host sync): the kept samples and weights against a per-ray
reference on the CPU, overflow reporting, capacity sizing, and nerfacc's own samples on CUDA."""

from __future__ import annotations

import math

import pytest
import torch

from studio_dreamfusion.renderers.capacity_marching import (
    SampleCapacity,
    capacity_march,
    compact_slots,
    dense_weights,
)
from studio_dreamfusion.renderers.volume import marching_samples
from tests.plugins.dreamfusion.marching_scene import lumpy_ball, nerfacc_scene, rays_at_the_ball

AABB = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
STEP = 0.04


def scene(n_rays: int = 96, resolution: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    rays_o, rays_d = rays_at_the_ball(n_rays, generator)
    # occupied: cells whose centre has some density, plus a random sprinkle of empty ones
    centres = (torch.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
    grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1)
    binaries = (lumpy_ball(grid.reshape(-1, 3)) > 0.5).reshape(resolution, resolution, resolution)
    binaries |= torch.rand(binaries.shape, generator=generator) < 0.1
    return rays_o, rays_d, binaries


def reference_samples(rays_o, rays_d, binaries, alpha_threshold, early_stop_eps):
    """Per ray, in order: the occupied samples of dense marching (the cell holding the midpoint
    is occupied), then nerfacc's pruning with the transmittance over occupied samples. Returns
    ``[(ray, t_start, t_end, t_point)]`` and each kept sample's weight over the kept ones."""
    dense = marching_samples(rays_o, rays_d, AABB.reshape(2, 3), STEP, False)
    steps = dense.samples_per_ray
    resolution = binaries.shape[0]
    kept, weights = [], []
    for ray in range(rays_o.shape[0]):
        in_front = 0.0
        kept_depth = 0.0
        for k in range(steps):
            i = ray * steps + k
            if not dense.valid[i]:
                continue
            point = rays_o[ray] + rays_d[ray] * dense.t_points[i]
            cell = [math.floor((float(c) + 1.0) / 2.0 * resolution) for c in point]
            if not all(0 <= c < resolution for c in cell) or not binaries[tuple(cell)]:
                continue
            sigma = float(lumpy_ball(point[None])[0])
            length = float(dense.t_ends[i] - dense.t_starts[i])
            alpha_at_step = 1.0 - math.exp(-sigma * STEP)
            keep = alpha_at_step >= alpha_threshold and math.exp(-in_front) >= early_stop_eps
            in_front += sigma * length
            if keep:
                kept.append((ray, float(dense.t_starts[i]), float(dense.t_ends[i])))
                weights.append(math.exp(-kept_depth) * (1.0 - math.exp(-sigma * length)))
                kept_depth += sigma * length
    return kept, weights


def march_ball(rays_o, rays_d, binaries, capacity=(1 << 16, 1 << 16), **overrides):
    options = dict(
        binaries=binaries,
        aabb=AABB,
        step_size=STEP,
        near_plane=0.0,
        far_plane=1e10,
        stratified=False,
        density_fn=lumpy_ball,
        alpha_threshold=0.01,
        early_stop_eps=1e-4,
        capacity=capacity,
    )
    options.update(overrides)
    return capacity_march(rays_o, rays_d, **options)


@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
def test_compact_slots_lists_the_true_positions_then_the_spare(density):
    generator = torch.Generator().manual_seed(int(density * 100))
    mask = torch.rand(5000, generator=generator) < density
    expected = mask.nonzero().squeeze(1)
    for capacity in (len(expected) + 7, max(1, len(expected) // 2)):
        slots, count = compact_slots(mask, capacity)
        assert int(count) == len(expected)
        fit = min(capacity, len(expected))
        assert torch.equal(slots[:fit], expected[:fit])
        assert (slots[fit:] == 5000).all()


def test_kept_samples_and_weights_equal_the_per_ray_reference():
    rays_o, rays_d, binaries = scene()
    samples = march_ball(rays_o, rays_d, binaries)
    expected, expected_weights = reference_samples(rays_o, rays_d, binaries, 0.01, 1e-4)
    valid = samples.valid
    assert int(valid.sum()) == len(expected) == int(samples.counts[1]) > 500
    assert int(samples.counts[0]) > len(expected)  # pruning removed occupied samples
    got = torch.stack([samples.ray_indices.float(), samples.t_starts, samples.t_ends], -1)[valid]
    torch.testing.assert_close(got, torch.tensor(expected), rtol=0, atol=1e-5)
    density = lumpy_ball(
        rays_o[samples.ray_indices] + rays_d[samples.ray_indices] * samples.t_points[:, None]
    )
    weights = dense_weights(density, samples)
    torch.testing.assert_close(weights[valid], torch.tensor(expected_weights), rtol=1e-4, atol=1e-6)
    assert (weights[~valid] == 0).all()
    assert (samples.t_ends[~valid] == samples.t_starts[~valid]).all()


def test_padding_is_shaded_at_distinct_points_with_zero_length():
    """Thousands of padding slots at one point made the hash grid's backward collide on its
    table entries (a 1.6x slower step on an H100): they read distinct candidates instead."""
    rays_o, rays_d, binaries = scene(seed=4)
    samples = march_ball(rays_o, rays_d, binaries, capacity=(1 << 16, 6000))
    assert samples.n_rays * samples.steps_per_ray > 6000  # fewer slots than candidates
    padding = ~samples.valid
    assert int(padding.sum()) > 3000
    rays = samples.ray_indices[padding]
    t = samples.t_points[padding]
    assert torch.unique(torch.stack([rays.float(), t], -1), dim=0).shape[0] == rays.shape[0]
    assert (samples.t_ends[padding] == samples.t_starts[padding]).all()


def test_without_pruning_every_occupied_sample_is_kept():
    rays_o, rays_d, binaries = scene(seed=1)
    samples = march_ball(rays_o, rays_d, binaries, density_fn=None)
    expected, _ = reference_samples(rays_o, rays_d, binaries, 0.0, 0.0)
    assert int(samples.valid.sum()) == len(expected) == int(samples.counts[0])
    got = samples.t_starts[samples.valid]
    torch.testing.assert_close(got, torch.tensor([e[1] for e in expected]), rtol=0, atol=1e-5)


def test_weights_carry_gradients_to_kept_samples_only():
    rays_o, rays_d, binaries = scene(n_rays=24, seed=2)
    samples = march_ball(rays_o, rays_d, binaries, capacity=(1 << 14, 1 << 14))
    density = torch.rand(samples.valid.shape[0], dtype=torch.float64, requires_grad=True)
    samples.t_starts, samples.t_ends = samples.t_starts.double(), samples.t_ends.double()
    assert torch.autograd.gradcheck(lambda d: dense_weights(d, samples)[:400], (density,))
    dense_weights(density, samples).sum().backward()
    assert (density.grad[~samples.valid] == 0).all()
    assert (density.grad[samples.valid] != 0).any()


def test_overflow_keeps_the_first_samples_and_reports_the_need():
    rays_o, rays_d, binaries = scene(seed=3)
    full = march_ball(rays_o, rays_d, binaries)
    needed = int(full.counts[1])
    small = march_ball(rays_o, rays_d, binaries, capacity=(1 << 16, needed // 2))
    assert torch.equal(small.counts, full.counts)  # the true need, beyond the capacity
    assert int(small.valid.sum()) == needed // 2
    assert torch.equal(small.t_starts, full.t_starts[: needed // 2])
    assert torch.equal(small.ray_indices, full.ray_indices[: needed // 2])
    # an occupied buffer that overflows drops the last occupied samples before pruning
    tight = march_ball(rays_o, rays_d, binaries, capacity=(int(full.counts[0]) // 2, 1 << 16))
    assert int(tight.counts[0]) == int(full.counts[0])
    assert int(tight.valid.sum()) < needed
    assert torch.equal(
        tight.t_starts[: int(tight.valid.sum())], full.t_starts[: int(tight.valid.sum())]
    )


def test_capacity_grows_on_overflow_and_shrinks_after_a_quiet_window():
    capacity = SampleCapacity((1000, 1000), headroom=1.25, granule=100, window=4)
    assert capacity.capacity == (1000, 1000)
    capacity.record(torch.tensor([900, 300]))
    assert capacity.update() is False and capacity.capacity == (1200, 1000)  # 900 * 1.25 > 1000
    capacity.record(torch.tensor([1500, 300]))  # ran with 1200 slots: an overflow
    assert capacity.update() is True and capacity.overflows == 1
    assert capacity.capacity == (1900, 1000)
    for _ in range(4):
        capacity.record(torch.tensor([200, 100]))
    assert capacity.update() is False
    assert capacity.capacity == (300, 200)  # four steps all below a third: shrunk to the need


def test_counts_of_a_step_are_compared_with_the_capacity_it_ran_with():
    capacity = SampleCapacity((100, 100), granule=100)
    capacity.record(torch.tensor([150, 50]))  # overflowed at 100
    capacity.capacity = (1000, 1000)  # grown meanwhile
    assert capacity.update() is True


@pytest.mark.gpu
@pytest.mark.parametrize("stratified", [False, True])
def test_capacity_march_gives_the_samples_of_nerfacc(stratified):
    """Same rays, grid and density as nerfacc's marching (``occupancy_marching.march``): the
    same kept samples, up to samples whose midpoint sits on a cell face within rounding."""
    from studio_dreamfusion.renderers.occupancy_marching import march

    estimator, rays_o, rays_d = nerfacc_scene()

    def sigma_fn(t_starts, t_ends, ray_indices):
        t_mid = (t_starts + t_ends)[:, None] / 2.0
        return lumpy_ball(rays_o[ray_indices] + rays_d[ray_indices] * t_mid)

    threshold = estimator.occs.mean().clamp(max=0.01)
    torch.manual_seed(1)
    rays, starts, _ = march(
        estimator, rays_o, rays_d, step_size=0.007, near_plane=0.0, far_plane=1e10,
        stratified=stratified, sigma_fn=sigma_fn, alpha_threshold=0.01, early_stop_eps=1e-4,
    )  # fmt: skip
    torch.manual_seed(1)
    ours = capacity_march(
        rays_o, rays_d, binaries=estimator.binaries, aabb=estimator.aabbs[0], step_size=0.007,
        near_plane=0.0, far_plane=1e10, stratified=stratified, density_fn=lumpy_ball,
        alpha_threshold=threshold, early_stop_eps=1e-4, capacity=(1 << 22, 1 << 21),
    )  # fmt: skip
    n = int(ours.valid.sum())
    assert rays.numel() > 10000
    assert abs(n - rays.numel()) <= 1e-3 * rays.numel()
    keys = lambda r, t: torch.sort((r.double() * 16 + t.double()).cpu()).values  # noqa: E731
    theirs = keys(rays, starts)
    mine = keys(ours.ray_indices[:n], ours.t_starts[:n])
    at = torch.searchsorted(theirs, mine).clamp(max=len(theirs) - 1)
    nearest = torch.minimum((theirs[at] - mine).abs(), (theirs[(at - 1).clamp(min=0)] - mine).abs())
    assert float((nearest < 2e-5).float().mean()) > 0.999


def test_renderer_on_fixed_buffers_renders_and_trains_like_the_marching_path():
    """The torch backend's ``marching`` samples with ``fixed_capacity``: the same image, the
    same gradients as without it; padding is marked in ``sample_valid`` and has zero weight."""
    from studio_dreamfusion.backgrounds import SolidColor
    from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
    from studio_dreamfusion.materials import NoMaterial
    from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer

    torch.manual_seed(0)
    grid = dict(otype="HashGrid", n_levels=4, n_features_per_level=2, log2_hashmap_size=12)
    grid.update(base_resolution=4, per_level_scale=1.5)
    geometry = ImplicitVolume(
        {"radius": 1.0, "pos_encoding_config": grid, "density_bias": "blob_dreamfusion"}
    )
    with torch.no_grad():
        geometry.encoding.params.normal_(0, 0.5)

    def renderer(fixed: bool) -> NeRFVolumeRenderer:
        return NeRFVolumeRenderer(
            {"radius": 1.0, "num_samples_per_ray": 48, "backend": "torch", "randomized": False,
             "torch_sampling": "marching", "fixed_capacity": fixed},
            geometry=geometry,
            material=NoMaterial({"color_activation": "sigmoid"}),
            background=SolidColor({"color": [0.0, 0.0, 1.0]}),
        ).train()  # fmt: skip

    o = torch.tensor([-2.5, 0.0, 0.0]).expand(1, 10, 12, 3)
    d = torch.nn.functional.normalize(
        torch.randn(1, 10, 12, 3, generator=torch.Generator().manual_seed(1)) * 0.25
        + torch.tensor([1.0, 0.0, 0.0]),
        dim=-1,
    )
    results = {}
    for fixed in (False, True):
        geometry.zero_grad()
        out = renderer(fixed)(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3))
        (out["comp_rgb"] * torch.linspace(0, 1, 3)).sum().backward()
        grads = torch.cat([p.grad.reshape(-1) for p in geometry.parameters() if p.grad is not None])
        results[fixed] = out, grads
    (plain, plain_grads), (fixed, fixed_grads) = results[False], results[True]
    assert 0.2 < float(plain["opacity"].detach().mean()) < 0.9  # some rays hit, some miss
    for key in ("comp_rgb", "opacity", "depth"):
        torch.testing.assert_close(fixed[key], plain[key], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fixed_grads, plain_grads, rtol=1e-3, atol=1e-6)
    valid = fixed["sample_valid"]
    assert int(valid.sum()) == plain["weights"].shape[0] < valid.shape[0]
    assert (fixed["weights"][~valid] == 0).all()
