"""The nerf-volume renderer's PyTorch path: sampling, compositing, chunking, outputs."""

from __future__ import annotations

import math

import pytest
import torch

from studio.geometry.base import BaseImplicitGeometry
from studio_dreamfusion.backgrounds import SolidColor
from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
from studio_dreamfusion.materials import NoMaterial
from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer
from studio_dreamfusion.renderers.volume import (
    accumulate,
    marching_samples,
    ray_aabb,
    uniform_samples,
    visible_uniform,
    weights_from_density_uniform,
)

GRID = {
    "otype": "HashGrid",
    "n_levels": 4,
    "n_features_per_level": 2,
    "log2_hashmap_size": 12,
    "base_resolution": 4,
    "per_level_scale": 1.5,
}


class ConstantSphere(BaseImplicitGeometry):
    """Density ``sigma`` inside a ball of radius ``r0`` around the origin, 0 outside; red."""

    def configure(self, sigma: float = 5.0, r0: float = 0.5) -> None:
        super().configure()
        self.sigma, self.r0 = sigma, r0

    def forward_density(self, points):
        inside = points.reshape(-1, 3).norm(dim=-1, keepdim=True) < self.r0
        return inside.float() * self.sigma

    def forward(self, points, output_normal=False):
        density = self.forward_density(points)
        out = {
            "density": density,
            "features": density.new_tensor([1.0, 0.0, 0.0]).expand(density.shape[0], 3),
        }
        if output_normal:
            out["normal"] = torch.nn.functional.normalize(points.reshape(-1, 3), dim=-1)
        return out


def renderer_for(geometry, samples=256, **cfg):
    material = NoMaterial({"color_activation": "none"})
    background = SolidColor({"color": [0.0, 0.0, 1.0]})
    return NeRFVolumeRenderer(
        {"radius": 1.0, "num_samples_per_ray": samples, "backend": "torch", **cfg},
        geometry=geometry,
        material=material,
        background=background,
    )


def test_ray_aabb():
    o = torch.tensor([[-3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-3.0, 5.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    near, far = ray_aabb(o, d, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    assert near.tolist() == [2.0, 0.0, near[2].item()] and far[:2].tolist() == [4.0, 1.0]
    assert far[2] == near[2]  # a miss has no extent


def test_uniform_samples_cover_the_box_and_jitter_in_training():
    o = torch.tensor([[-3.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    box = torch.tensor([[-1.0] * 3, [1.0] * 3])
    s = uniform_samples(o, d, box, 8, stratified=False)
    assert torch.allclose(s.t_starts, 2.0 + torch.arange(8) * 0.25)
    assert torch.allclose(s.t_points, s.t_starts + 0.125)
    torch.manual_seed(0)
    jittered = uniform_samples(o, d, box, 8, stratified=True)
    assert ((jittered.t_points >= jittered.t_starts) & (jittered.t_points <= jittered.t_ends)).all()
    assert not torch.allclose(jittered.t_points, s.t_points)


def test_weights_match_the_closed_form():
    sigma = torch.tensor([0.0, 1.0, 2.0, 0.5])
    starts = torch.tensor([0.0, 0.5, 1.0, 1.5])
    weights = weights_from_density_uniform(sigma, starts, starts + 0.5, 1, 4)
    expected, transmittance = [], 1.0
    for s in sigma.tolist():
        alpha = 1 - math.exp(-s * 0.5)
        expected.append(transmittance * alpha)
        transmittance *= 1 - alpha
    assert torch.allclose(weights, torch.tensor(expected), atol=1e-6)


def test_render_of_a_constant_ball_matches_the_analytic_opacity():
    geometry = ConstantSphere({"radius": 1.0}, sigma=4.0, r0=0.5)
    # no pruning: at 2048 samples per ray, alpha at the marching step is below 0.01 (see below)
    renderer = renderer_for(geometry, samples=2048, grid_prune=False).eval()
    o = torch.tensor([[[[-3.0, 0.0, 0.0], [-3.0, 0.3, 0.0], [-3.0, 0.9, 0.0]]]])
    d = torch.tensor([1.0, 0.0, 0.0]).expand(1, 1, 3, 3)
    with torch.no_grad():
        out = renderer(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3))
    chords = [2 * 0.5, 2 * math.sqrt(0.25 - 0.09), 0.0]
    expected = torch.tensor([1 - math.exp(-4.0 * c) for c in chords])
    assert torch.allclose(out["opacity"][0, 0, :, 0], expected, atol=5e-3)
    # red object over a blue background
    assert torch.allclose(out["comp_rgb"][0, 0, :, 0], expected, atol=5e-3)
    assert torch.allclose(out["comp_rgb"][0, 0, :, 2], 1 - expected, atol=5e-3)
    # depth of the centre ray: expected entry point weighted by the visible density
    assert 2.5 < out["depth"][0, 0, 0, 0] / out["opacity"][0, 0, 0, 0] < 3.0
    # the normal facing the camera is -x: comp_normal encodes it as (0, .5, .5) * opacity
    normal = out["comp_normal"][0, 0, 0] / out["opacity"][0, 0, 0]
    assert normal[0] < 0.2 and abs(normal[1] - 0.5) < 0.05


def test_visible_samples_follow_nerfacc_alpha_and_early_stop_rules():
    sigma = torch.tensor([0.05, 0.2, 0.0, 30.0, 30.0, 1.0])
    starts = torch.arange(6.0) * 0.5
    step = 0.1  # alpha at the step: 0.005, 0.0198, 0, 0.95, 0.95, 0.095
    keep = visible_uniform(sigma, starts, starts + 0.5, 1, 6, 0.01, 1e-4, step)
    # transmittance in front (actual 0.5 intervals): 1, .975, .878, .878, 3e-7, 9e-14
    assert keep.tolist() == [False, True, False, True, False, False]
    only_alpha = visible_uniform(sigma, starts, starts + 0.5, 1, 6, 0.01, 0.0, step)
    assert only_alpha.tolist() == [False, True, False, True, True, True]
    assert visible_uniform(sigma, starts, starts + 0.5, 1, 6, 0.0, 0.0, step).all()


class LearnableBall(ConstantSphere):
    """:class:`ConstantSphere` whose density inside is a parameter (gradients can be checked)."""

    def configure(self, sigma: float = 5.0, r0: float = 0.5) -> None:
        super().configure(sigma, r0)
        self.sigma = torch.nn.Parameter(torch.tensor(sigma))


@pytest.mark.parametrize("sigma, visible", [(0.05, False), (0.5, True)])
def test_torch_path_skips_what_nerfacc_would_skip(sigma, visible):
    """With ``grid_prune`` a faint ball (alpha below 0.01 at the marching step, 1.732 * 2 / 32 =
    0.108) renders as empty space and gets no gradient, as on the nerfacc path; without it, or
    dense enough, it renders and trains."""
    o = torch.tensor([-3.0, 0.0, 0.0]).expand(1, 2, 2, 3)
    d = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 2, 3)
    for prune in (True, False):
        geometry = LearnableBall({"radius": 1.0}, sigma=sigma, r0=0.8)
        renderer = renderer_for(geometry, samples=32, grid_prune=prune).train()
        out = renderer(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3))
        out["opacity"].sum().backward()
        seen = visible or not prune
        expected = 1 - math.exp(-sigma * 1.6)  # chord of the ball: 1.6
        assert out["opacity"][0, 0, 0, 0].item() == pytest.approx(
            expected if seen else 0.0, abs=0.02
        )
        assert (geometry.sigma.grad.abs() > 0).item() == seen


def test_eval_chunking_gives_the_same_image():
    torch.manual_seed(0)
    geometry = ImplicitVolume(
        {"radius": 1.0, "pos_encoding_config": GRID, "normal_type": "analytic"}
    )
    whole = renderer_for(geometry, samples=16, eval_chunk_size=10**9).eval()
    chunked = renderer_for(geometry, samples=16, eval_chunk_size=16 * 7).eval()
    o = torch.tensor([-2.5, 0.0, 0.0]).expand(1, 12, 10, 3)
    d = torch.nn.functional.normalize(
        torch.randn(1, 12, 10, 3) * 0.2 + torch.tensor([1.0, 0, 0]), dim=-1
    )
    with torch.no_grad():
        a = whole(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3))
        b = chunked(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3))
    for key in ("comp_rgb", "opacity", "depth", "comp_normal", "z_variance"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_training_outputs_carry_per_sample_tensors_for_regularisers():
    torch.manual_seed(0)
    geometry = ImplicitVolume(
        {"radius": 1.0, "pos_encoding_config": GRID, "normal_type": "analytic"}
    )
    renderer = renderer_for(geometry, samples=8, return_comp_normal=True, grid_prune=False)
    renderer.train()
    o = torch.tensor([-2.5, 0.0, 0.0]).expand(2, 3, 4, 3)
    d = torch.tensor([1.0, 0.0, 0.0]).expand(2, 3, 4, 3)
    out = renderer(rays_o=o, rays_d=d, light_positions=torch.zeros(2, 3))
    n = 2 * 3 * 4 * 8
    for key, shape in [
        ("weights", (n, 1)),
        ("t_points", (n, 1)),
        ("t_intervals", (n, 1)),
        ("t_dirs", (n, 3)),
        ("points", (n, 3)),
        ("normal", (n, 3)),
        ("density", (n, 1)),
    ]:
        assert out[key].shape == shape, key
    for key in ("comp_rgb", "comp_rgb_fg", "comp_rgb_bg", "comp_normal"):
        assert out[key].shape == (2, 3, 4, 3), key
    for key in ("opacity", "depth", "z_variance"):
        assert out[key].shape == (2, 3, 4, 1), key
    out["comp_rgb"].sum().backward()
    assert geometry.encoding.params.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "bg",
    [
        torch.tensor([0.0, 1.0, 0.0]),
        torch.tensor([[0.0, 1.0, 0.0]]),
        torch.zeros(1, 2, 2, 3) + torch.tensor([0.0, 1.0, 0.0]),
    ],
)
def test_explicit_background_colour_overrides(bg):
    geometry = ConstantSphere({"radius": 1.0}, sigma=0.0)
    renderer = renderer_for(geometry, samples=4).eval()
    o = torch.tensor([-3.0, 0.0, 0.0]).expand(1, 2, 2, 3)
    d = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 2, 3)
    with torch.no_grad():
        out = renderer(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3), bg_color=bg)
    assert torch.allclose(out["comp_rgb"], torch.tensor([0.0, 1.0, 0.0]).expand(1, 2, 2, 3))


def test_checkpoints_load_across_backends():
    """A state dict from a run with an occupancy grid loads where the grid does not exist."""
    geometry = ConstantSphere({"radius": 1.0})
    renderer = renderer_for(geometry)
    state = renderer.state_dict()
    state["estimator.occs"] = torch.zeros(32**3)
    state["estimator.binaries"] = torch.zeros(1, 32, 32, 32, dtype=torch.bool)
    result = renderer.load_state_dict(state, strict=True)
    assert not result.unexpected_keys


BOX = torch.tensor([[-1.0] * 3, [1.0] * 3])


def test_marching_samples_step_like_nerfacc_from_the_near_plane():
    """nerfacc's dense marching: fixed steps from t0, kept where the midpoint is in the box."""
    o = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    step = 1.732 * 2 / 16
    samples = marching_samples(o, d, BOX, step, stratified=False)
    valid = samples.valid.reshape(3, -1)
    mids = samples.t_points.reshape(3, -1)
    expected = [(k + 0.5) * step for k in range(40) if 2.0 <= (k + 0.5) * step < 4.0]
    torch.testing.assert_close(mids[0][valid[0]], torch.tensor(expected))
    assert not valid[1].any()  # misses the box
    inside = [(k + 0.5) * step for k in range(40) if (k + 0.5) * step < 1.0]
    torch.testing.assert_close(mids[2][valid[2]], torch.tensor(inside))  # starts inside
    widths = (samples.t_ends - samples.t_starts)[samples.valid]
    torch.testing.assert_close(widths, torch.full_like(widths, step))
    # the longest chord (the diagonal) fits in the padded length
    corner = torch.tensor([[-1.0, -1.0, -1.0]]) * 1.5
    diagonal = marching_samples(corner, -corner / corner.norm(), BOX, step, stratified=False)
    assert diagonal.valid.sum() >= 15 and diagonal.valid.numel() > diagonal.valid.sum()

    torch.manual_seed(0)
    jittered = marching_samples(o[:1], d[:1], BOX, step, stratified=True)
    t = jittered.t_points[jittered.valid]
    assert t.min() >= 2.0 and t.max() < 4.0 and len(t) in (len(expected), len(expected) + 1)
    torch.testing.assert_close(t.diff(), torch.full_like(t.diff(), step))


@pytest.mark.parametrize("sampling", ["box", "marching"])
def test_per_sample_outputs_hold_only_the_surviving_samples(sampling):
    """Samples nerfacc would not return (pruned, or marching's padding) are not in the
    per-sample outputs; per-ray sums are those of the surviving samples alone."""
    renderer = renderer_for(ConstantSphere({"radius": 1.0}), samples=32, torch_sampling=sampling)
    renderer.train()
    o = torch.tensor([-3.0, 0.0, 0.0]).expand(1, 2, 2, 3).clone()
    o[0, 0, 0, 1] = 0.8  # this ray misses the ball: every sample pruned
    d = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 2, 3)
    out = renderer(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3))
    weights = out["weights"][:, 0]
    assert (out["density"] > 0).all() and (weights > 0).all()
    assert 0 < weights.numel() < 4 * 32 and 0 not in out["ray_indices"].tolist()
    opacity = accumulate(torch.ones_like(weights)[:, None], weights, out["ray_indices"], 4)
    torch.testing.assert_close(opacity.reshape(1, 2, 2, 1), out["opacity"])
    t = out["t_points"][:, 0]
    assert ((o[0, 0, 1, 0] + t).abs() < 0.5 + 1e-6).all()  # every sample inside the ball
