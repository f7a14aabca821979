"""The random-camera data module: batch contents, milestones, evaluation orbits."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from studio.data import cameras as cam
from studio.data.random_camera import RandomCameraDataModule
from studio.errors import ConfigError


def test_training_batch_shapes_and_unit_rays():
    torch.manual_seed(0)
    data = RandomCameraDataModule({"batch_size": 4, "height": 8, "width": 6})
    batch = data.train_batch()
    assert batch["rays_o"].shape == (4, 8, 6, 3) and batch["rays_d"].shape == (4, 8, 6, 3)
    assert torch.allclose(batch["rays_d"].norm(dim=-1), torch.ones(4, 8, 6), atol=1e-5)
    for key, shape in [("c2w", (4, 4, 4)), ("mvp_mtx", (4, 4, 4)), ("light_positions", (4, 3))]:
        assert batch[key].shape == shape
    # stratified azimuth: one sample in each quarter of [-180, 180)
    bins = ((batch["azimuth"] + 180) // 90).long().tolist()
    assert bins == [0, 1, 2, 3]


def test_resolution_milestones_switch_on_the_named_step():
    data = RandomCameraDataModule(
        {"height": [8, 16], "width": [8, 16], "batch_size": [4, 2], "resolution_milestones": [10]}
    )
    data.do_update_step(0, 9)
    assert data.train_batch()["rays_d"].shape == (4, 8, 8, 3)
    data.do_update_step(0, 10)
    assert data.train_batch()["rays_d"].shape == (2, 16, 16, 3)


def test_test_orbit_covers_the_full_circle():
    data = RandomCameraDataModule({"n_test_views": 5, "eval_height": 4, "eval_width": 4})
    views = data.test_batches()
    assert len(views) == 5
    assert [round(v["azimuth"].item()) for v in views] == [0, 90, 180, 270, 360]
    assert views[0]["elevation"].item() == 15.0
    assert torch.allclose(views[2]["camera_positions"].norm(), torch.tensor(1.5))


# ==================================================================================================
# Thorough checks. Statistical tests use fixed seeds and ~20k cameras; every tolerance is derived
# from the sample size:
# * i.i.d. samples: Dvoretzky-Kiefer-Wolfowitz, P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2), with
#   eps chosen for a false-alarm probability ALPHA;
# * elevation (the uniform-in-degrees / uniform-on-sphere choice is made once per batch, so samples
#   are clustered): a Z-sigma bound on the empirical CDF at a few points using its exact variance;
# * proportions, means and standard deviations: Z standard errors.
# ==================================================================================================

ALPHA = 1e-6
Z = 5.0
DEG = math.pi / 180
STAT_BATCHES, STAT_BATCH_SIZE = 200, 100  # 20k cameras
NO_PERTURB = {"camera_perturb": 0.0, "center_perturb": 0.0, "up_perturb": 0.0}


def dkw_eps(n: int) -> float:
    return math.sqrt(math.log(2 / ALPHA) / (2 * n))


def ks_distance(samples: torch.Tensor, cdf) -> float:
    """sup_x |F_n(x) - F(x)| for the empirical CDF of ``samples``."""
    x, _ = samples.double().flatten().sort()
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max((i / n - f).max().item(), (f - (i - 1) / n).max().item())


def uniform_cdf(lo: float, hi: float):
    return lambda x: ((x - lo) / (hi - lo)).clamp(0, 1)


def normal_cdf(std: float):
    return lambda x: 0.5 * (1 + torch.erf(x / (std * math.sqrt(2))))


def assert_uniform(samples: torch.Tensor, lo: float, hi: float, slack: float = 1e-5) -> None:
    assert samples.min() >= lo - slack and samples.max() <= hi + slack
    assert ks_distance(samples, uniform_cdf(lo, hi)) < dkw_eps(samples.numel())


def assert_normal(samples: torch.Tensor, std: float) -> None:
    n = samples.numel()
    x = samples.double()
    assert abs(x.mean().item()) < Z * std / math.sqrt(n)
    assert abs(x.std().item() - std) < Z * std / math.sqrt(2 * n)
    assert ks_distance(x, normal_cdf(std)) < dkw_eps(n)


@functools.cache
def _draw_cached(cfg_items: tuple, n_batches: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    data = RandomCameraDataModule({"height": 1, "width": 1, **dict(cfg_items)})
    batches = [data.train_batch() for _ in range(n_batches)]
    return {
        key: torch.cat([b[key] for b in batches])
        for key, value in batches[0].items()
        if isinstance(value, torch.Tensor)
    }


def draw(n_batches: int = STAT_BATCHES, seed: int = 0, **cfg) -> dict[str, torch.Tensor]:
    """Concatenated training batches (1x1 images, ``batch_size`` 100 unless given)."""
    cfg.setdefault("batch_size", STAT_BATCH_SIZE)
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()))
    return _draw_cached(items, n_batches, seed)


def unperturbed_positions(s: dict[str, torch.Tensor]) -> torch.Tensor:
    return cam.spherical_to_position(
        s["elevation"] * DEG, s["azimuth"] * DEG, s["camera_distances"]
    )


# -- 1. sampled distributions ----------------------------------------------------------------------
def test_elevation_is_the_half_half_mixture_of_degree_uniform_and_sphere_uniform():
    e0, e1 = -10.0, 90.0
    s = draw()
    elevation = s["elevation"].double()
    assert elevation.min() >= e0 - 1e-4 and elevation.max() <= e1 + 1e-4
    # Both ends are reached (about 0.5 % of the mass lies within 0.5 degrees of either end).
    assert elevation.min() < e0 + 0.5 and elevation.max() > e1 - 0.5

    def f_deg(x):
        return (x - e0) / (e1 - e0)

    def f_sph(x):
        return (math.sin(x * DEG) - math.sin(e0 * DEG)) / (math.sin(e1 * DEG) - math.sin(e0 * DEG))

    b, n_batches = STAT_BATCH_SIZE, STAT_BATCHES
    for x in (-5.0, 0.0, 10.0, 30.0, 50.0, 70.0, 85.0):
        f1, f2 = f_deg(x), f_sph(x)
        expected = 0.5 * (f1 + f2)
        # Per-batch CDF G: Var G = E[Var(G | branch)] + Var(E[G | branch]).
        var_batch = 0.5 * (f1 * (1 - f1) + f2 * (1 - f2)) / b + 0.25 * (f1 - f2) ** 2
        tolerance = Z * math.sqrt(var_batch / n_batches)
        observed = (elevation <= x).double().mean().item()
        assert abs(observed - expected) < tolerance, (x, observed, expected, tolerance)


def test_elevation_uses_the_configured_range():
    s = draw(elevation_range=[20.0, 40.0], n_batches=20)
    assert s["elevation"].min() >= 20 - 1e-4 and s["elevation"].max() <= 40 + 1e-4
    # Degenerate range: every sample is exactly the value (both branches).
    s = draw(elevation_range=[30.0, 30.0], n_batches=20)
    assert torch.allclose(s["elevation"], torch.full_like(s["elevation"], 30.0), atol=1e-4)


def test_azimuth_is_uniform_in_range():
    for stratified in (False, True):
        s = draw(batch_uniform_azimuth=stratified)
        assert_uniform(s["azimuth"], -180.0, 180.0, slack=1e-4)
    s = draw(batch_uniform_azimuth=False, azimuth_range=[-30.0, 120.0])
    assert_uniform(s["azimuth"], -30.0, 120.0, slack=1e-4)


@pytest.mark.parametrize(
    ("batch_size", "azimuth_range"), [(8, (-180.0, 180.0)), (5, (-45.0, 75.0))]
)
def test_batch_uniform_azimuth_puts_one_sample_in_each_bin(batch_size, azimuth_range):
    a0, a1 = azimuth_range
    torch.manual_seed(1)
    data = RandomCameraDataModule(
        {"batch_size": batch_size, "height": 1, "width": 1, "azimuth_range": list(azimuth_range)}
    )
    within_bin = []
    for _ in range(200):
        azimuth = data.train_batch()["azimuth"].double()
        position = (azimuth - a0) / (a1 - a0) * batch_size
        bins = position.floor().long()
        assert bins.tolist() == list(range(batch_size))
        within_bin.append(position - bins)
    # Inside its bin each sample is uniform.
    assert_uniform(torch.cat(within_bin), 0.0, 1.0)


def test_camera_distance_and_fovy_are_uniform():
    s = draw()
    assert_uniform(s["camera_distances"], 1.0, 1.5)
    assert_uniform(s["fovy"] / DEG, 40.0, 70.0, slack=1e-4)
    s = draw(camera_distance_range=[2.0, 3.5], fovy_range=[20.0, 25.0])
    assert_uniform(s["camera_distances"], 2.0, 3.5)
    assert_uniform(s["fovy"] / DEG, 20.0, 25.0, slack=1e-4)


def test_camera_perturbation_is_uniform_in_a_cube():
    p = 0.3
    s = draw(camera_perturb=p)
    offset = s["camera_positions"] - unperturbed_positions(s)
    for axis in range(3):
        assert_uniform(offset[:, axis], -p, p)
    # Independent axes: the octants are equally likely.
    octant = ((offset > 0).long() * torch.tensor([1, 2, 4])).sum(-1)
    counts = torch.bincount(octant, minlength=8).double() / offset.shape[0]
    assert (counts - 1 / 8).abs().max() < Z * math.sqrt((1 / 8) * (7 / 8) / offset.shape[0])


def test_no_perturbation_gives_exact_positions_looking_at_the_origin():
    s = draw(n_batches=10, **NO_PERTURB)
    position = unperturbed_positions(s)
    assert torch.allclose(s["camera_positions"], position, atol=1e-5)
    c2w = s["c2w"]
    back = torch.nn.functional.normalize(position, dim=-1)
    assert torch.allclose(c2w[:, :3, 2], back, atol=1e-5)
    # Up perturbation 0: "right" is horizontal and the camera up points upwards.
    assert torch.allclose(c2w[:, 2, 0], torch.zeros(c2w.shape[0]), atol=1e-5)
    assert (c2w[:, 2, 1] > 0).all()


def _capture_look_at(monkeypatch) -> list[tuple[torch.Tensor, ...]]:
    calls: list[tuple[torch.Tensor, ...]] = []
    original = cam.look_at

    def recording(position, center, up):
        calls.append((position.clone(), center.clone(), up.clone()))
        return original(position, center, up)

    monkeypatch.setattr(cam, "look_at", recording)
    return calls


def test_center_and_up_perturbations_are_normal(monkeypatch):
    calls = _capture_look_at(monkeypatch)
    torch.manual_seed(2)
    data = RandomCameraDataModule({"batch_size": STAT_BATCH_SIZE, "height": 1, "width": 1})
    batches = [data.train_batch() for _ in range(STAT_BATCHES)]
    handed_out = STAT_BATCHES * STAT_BATCH_SIZE  # look_at also saw the rest of the last draw
    position, center, up = (torch.cat([c[i] for c in calls])[:handed_out] for i in range(3))
    assert torch.equal(position, torch.cat([b["camera_positions"] for b in batches]))
    for axis in range(3):
        assert_normal(center[:, axis], 0.2)
        assert_normal(up[:, axis] - (1.0 if axis == 2 else 0.0), 0.02)
    # The camera's optical axis passes through the sampled centre.
    c2w = torch.cat([b["c2w"] for b in batches])
    to_center = torch.nn.functional.normalize(center - position, dim=-1)
    assert torch.allclose(-c2w[:, :3, 2], to_center, atol=1e-5)


def test_up_perturbation_recovered_from_the_camera_frame():
    """At elevation 0 looking at the origin, the camera roll is tan = d_r / (1 + d_z) ~ N(0, s^2)."""
    sigma = 0.02
    s = draw(elevation_range=[0.0, 0.0], camera_perturb=0.0, center_perturb=0.0)
    c2w = s["c2w"].double()
    lookat = -torch.nn.functional.normalize(s["camera_positions"].double(), dim=-1)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(lookat)
    right0 = torch.nn.functional.normalize(torch.cross(lookat, z, dim=-1), dim=-1)
    cam_up = c2w[:, :3, 1]
    roll = (cam_up * right0).sum(-1) / cam_up[:, 2]
    # The (1 + d_z) denominator inflates the spread by a factor 1 + O(sigma^2) = 1.0006: negligible
    # against the 5 standard errors (2.5 %) allowed below.
    assert_normal(roll, sigma)


# -- 2. light strategies ---------------------------------------------------------------------------
def test_dreamfusion_light_distance_is_uniform():
    s = draw()
    assert_uniform(s["light_positions"].norm(dim=-1), 0.8, 1.5)
    s = draw(light_distance_range=[2.0, 4.0])
    assert_uniform(s["light_positions"].norm(dim=-1), 2.0, 4.0)


def test_dreamfusion_light_without_perturbation_lies_along_the_camera():
    s = draw(n_batches=10, light_position_perturb=0.0)  # camera perturbation stays on
    direction = torch.nn.functional.normalize(s["light_positions"], dim=-1)
    expected = torch.nn.functional.normalize(s["camera_positions"], dim=-1)
    assert torch.allclose(direction, expected, atol=1e-6)


@pytest.mark.parametrize("perturb", [1.0, 2.0])
def test_dreamfusion_light_perturbation_is_isotropic_normal(perturb):
    """Camera fixed at (2,0,0); light direction = normalize((2,0,0) + perturb * N(0, I))."""
    s = draw(
        elevation_range=[0.0, 0.0],
        azimuth_range=[0.0, 0.0],
        camera_distance_range=[2.0, 2.0],
        camera_perturb=0.0,
        light_position_perturb=perturb,
    )
    light = s["light_positions"].double()
    n = light.shape[0]
    # The ratio of the two transverse components is n_y / n_z: standard Cauchy, for any scale.
    assert ks_distance(
        light[:, 1] / light[:, 2], lambda x: 0.5 + torch.atan(x) / math.pi
    ) < dkw_eps(n)
    # The light falls behind the origin when 2 + perturb * n_x < 0: probability Phi(-2 / perturb).
    expected = 0.5 * (1 + math.erf(-2 / perturb / math.sqrt(2)))
    observed = (light[:, 0] < 0).double().mean().item()
    assert abs(observed - expected) < Z * math.sqrt(expected * (1 - expected) / n)


def test_magic3d_light_is_within_60_degrees_of_the_camera_all_around():
    s = draw(light_sample_strategy="magic3d")
    light = s["light_positions"].double()
    n = light.shape[0]
    assert_uniform(light.norm(dim=-1), 0.8, 1.5)
    direction = torch.nn.functional.normalize(light, dim=-1)
    z = torch.nn.functional.normalize(s["camera_positions"].double(), dim=-1)
    angle = torch.acos((direction * z).sum(-1).clamp(-1, 1)) / DEG
    # Light elevation U(30, 90) deg in the camera's frame: the angle to the camera axis is U(0, 60).
    assert_uniform(angle, 0.0, 60.0, slack=0.05)
    # Light azimuth in the frame x = normalize(z x e_z), y = z x x covers the whole circle uniformly
    # (the reference's seed drew only half of it).
    e_z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(z)
    x = torch.nn.functional.normalize(torch.cross(z, e_z, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    azimuth = torch.atan2((direction * y).sum(-1), (direction * x).sum(-1))
    assert ks_distance(azimuth, uniform_cdf(-math.pi, math.pi)) < dkw_eps(n)
    # Each quadrant around the camera axis gets a quarter of the lights.
    quadrant = ((azimuth + math.pi) // (math.pi / 2)).long().clamp(max=3)
    counts = torch.bincount(quadrant, minlength=4).double() / n
    assert (counts - 0.25).abs().max() < Z * math.sqrt(0.25 * 0.75 / n)


def test_magic3d_light_with_camera_on_the_x_axis():
    """Camera at (2,0,0): frame x = (0,-1,0), y = (0,0,1); light = dist * (cos el, ...)."""
    s = draw(
        n_batches=20,
        light_sample_strategy="magic3d",
        elevation_range=[0.0, 0.0],
        azimuth_range=[0.0, 0.0],
        camera_distance_range=[2.0, 2.0],
        light_distance_range=[1.0, 1.0],
        camera_perturb=0.0,
    )
    light = s["light_positions"].double()
    assert torch.allclose(light.norm(dim=-1), torch.ones(light.shape[0], dtype=torch.float64))
    # Local elevation = asin(light . z) with z = +x.
    assert light[:, 0].min() >= math.sin(math.pi / 6) - 1e-6
    # Both signs of both transverse components occur.
    for axis in (1, 2):
        assert (light[:, axis] > 0.3).any() and (light[:, axis] < -0.3).any()


def test_unknown_light_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="light_sample_strategy"):
        RandomCameraDataModule({"light_sample_strategy": "sun"})


# -- 3. hand-computed camera -----------------------------------------------------------------------
HAND = {
    "elevation_range": [0.0, 0.0],
    "azimuth_range": [0.0, 0.0],
    "camera_distance_range": [2.0, 2.0],
    "fovy_range": [60.0, 60.0],
    "light_position_perturb": 0.0,
    "light_distance_range": [1.0, 1.0],
    **NO_PERTURB,
}


def _hand_batch(height: int, width: int, **overrides) -> dict:
    torch.manual_seed(0)
    data = RandomCameraDataModule(
        {**HAND, "batch_size": 2, "height": height, "width": width, **overrides}
    )
    return data.train_batch()


def test_hand_camera_frame_position_and_light():
    batch = _hand_batch(4, 6)
    # p = (2,0,0); lookat = -x; right = lookat x up = +y; up = +z; back = +x.
    expected = torch.tensor(
        [
            [0.0, 0.0, 1.0, 2.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    assert torch.allclose(batch["c2w"], expected.expand(2, 4, 4), atol=1e-6)
    assert torch.allclose(batch["camera_positions"], torch.tensor([[2.0, 0.0, 0.0]] * 2))
    assert torch.allclose(batch["light_positions"], torch.tensor([[1.0, 0.0, 0.0]] * 2))
    assert batch["elevation"].tolist() == [0.0, 0.0] and batch["azimuth"].tolist() == [0.0, 0.0]
    assert batch["camera_distances"].tolist() == [2.0, 2.0]
    assert torch.allclose(batch["fovy"], torch.full((2,), math.pi / 3))
    assert torch.equal(batch["rays_o"], torch.tensor([2.0, 0.0, 0.0]).expand(2, 4, 6, 3))


def test_hand_camera_elevated_on_the_y_axis():
    batch = _hand_batch(
        2, 2, elevation_range=[30.0, 30.0], azimuth_range=[90.0, 90.0], batch_size=1
    )
    # p = 2 (0, cos30, sin30) = (0, sqrt3, 1); lookat = (0, -sqrt3/2, -1/2);
    # right = lookat x z = (-1, 0, 0); up = right x lookat = (0, -1/2, sqrt3/2).
    r3 = math.sqrt(3)
    c2w = batch["c2w"][0]
    assert torch.allclose(c2w[:3, 3], torch.tensor([0.0, r3, 1.0]), atol=1e-6)
    assert torch.allclose(c2w[:3, 0], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, -0.5, r3 / 2]), atol=1e-6)
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, r3 / 2, 0.5]), atol=1e-6)


def test_hand_camera_centre_pixel_ray_hits_the_origin():
    batch = _hand_batch(5, 5)
    d = batch["rays_d"][:, 2, 2]
    assert torch.allclose(d, torch.tensor([[-1.0, 0.0, 0.0]] * 2), atol=1e-7)
    assert torch.allclose(batch["rays_o"][:, 2, 2] + 2 * d, torch.zeros(2, 3), atol=1e-6)


def test_hand_camera_corner_ray_directions():
    height, width = 4, 6
    batch = _hand_batch(height, width)
    f = 0.5 * height / math.tan(math.pi / 6)  # = 2 sqrt3
    for j, i in [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (1, 2)]:
        x, y = (i + 0.5 - width / 2) / f, -(j + 0.5 - height / 2) / f
        # camera (x, y, -1) -> world x * right + y * up - back = (-1, x, y)
        expected = torch.nn.functional.normalize(torch.tensor([-1.0, x, y]), dim=0)
        assert torch.allclose(batch["rays_d"][:, j, i], expected.expand(2, 3), atol=1e-6), (i, j)
    assert torch.allclose(batch["rays_d"].norm(dim=-1), torch.ones(2, height, width), atol=1e-6)


def test_hand_camera_projection_and_mvp():
    height, width = 4, 6
    batch = _hand_batch(height, width)
    n, f = 0.01, 100.0
    tan30 = math.tan(math.pi / 6)
    proj = torch.zeros(4, 4)
    proj[0, 0] = 1 / (tan30 * width / height)
    proj[1, 1] = -1 / tan30
    proj[2, 2] = -(f + n) / (f - n)
    proj[2, 3] = -2 * f * n / (f - n)
    proj[3, 2] = -1.0
    assert torch.allclose(batch["proj_mtx"], proj.expand(2, 4, 4), atol=1e-6)
    mvp = batch["mvp_mtx"][0]

    def ndc(point):
        clip = mvp @ torch.tensor([*point, 1.0])
        return clip[:3] / clip[3]

    depth = ((f + n) * 2 - 2 * f * n) / ((f - n) * 2)  # NDC depth of a point 2 in front
    assert torch.allclose(ndc((0.0, 0.0, 0.0)), torch.tensor([0.0, 0.0, depth]), atol=1e-6)
    # World (0, 0.5, 0.25) is camera (0.5, 0.25, -2): ndc = (0.5 / (2 tan30 1.5), -0.25 / (2 tan30)).
    expected = torch.tensor([0.5 / (2 * tan30 * 1.5), -0.25 / (2 * tan30), depth])
    assert torch.allclose(ndc((0.0, 0.5, 0.25)), expected, atol=1e-6)


def test_random_batch_matrices_and_rays_are_consistent():
    torch.manual_seed(5)
    height, width = 6, 10
    data = RandomCameraDataModule(
        {"batch_size": 16, "height": height, "width": width, "camera_perturb": 0.3}
    )
    batch = data.train_batch()
    c2w = batch["c2w"]
    assert torch.allclose(batch["mvp_mtx"], batch["proj_mtx"] @ torch.linalg.inv(c2w), atol=1e-5)
    assert torch.allclose(
        batch["proj_mtx"], cam.projection_matrix(batch["fovy"], width / height), atol=0
    )
    assert torch.equal(c2w[:, :3, 3], batch["camera_positions"])
    assert torch.equal(
        batch["rays_o"], batch["camera_positions"][:, None, None].expand_as(batch["rays_o"])
    )
    assert torch.allclose(batch["rays_d"].norm(dim=-1), torch.ones(16, height, width), atol=1e-5)
    # Every pixel's ray projects back onto that pixel's centre.
    points = batch["rays_o"] + 0.9 * batch["rays_d"]
    mvp = batch["mvp_mtx"]
    clip = torch.einsum("brc,bhwc->bhwr", mvp[:, :, :3], points) + mvp[:, None, None, :, 3]
    ndc = clip[..., :2] / clip[..., 3:]
    j, i = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    expected = torch.stack([(i + 0.5) / width * 2 - 1, (j + 0.5) / height * 2 - 1], dim=-1)
    assert torch.allclose(ndc, expected.float().expand_as(ndc), atol=1e-4)


def test_unnormalized_rays_have_unit_depth():
    batch = _hand_batch(4, 6, rays_d_normalize=False)
    f = 0.5 * 4 / math.tan(math.pi / 6)
    assert torch.allclose(
        batch["rays_d"][:, 0, 0], torch.tensor([-1.0, -2.5 / f, 1.5 / f]), atol=1e-6
    )
    torch.manual_seed(0)
    batch = RandomCameraDataModule(
        {"batch_size": 4, "height": 3, "width": 5, "rays_d_normalize": False}
    ).train_batch()
    depth = (batch["rays_d"] * batch["c2w"][:, None, None, :3, 2]).sum(-1)
    assert torch.allclose(depth, -torch.ones_like(depth), atol=1e-5)


# -- 4. evaluation orbits --------------------------------------------------------------------------
EVAL = {"eval_height": 6, "eval_width": 10, "eval_elevation_deg": 30.0}
EVAL.update(eval_camera_distance=2.0, eval_fovy_deg=60.0)


def _check_orbit_view(view: dict, index: int, azimuth_deg: float) -> None:
    assert torch.equal(view["index"], torch.tensor([index]))
    assert view["height"] == 6 and view["width"] == 10
    assert type(view["height"]) is int and type(view["width"]) is int
    assert view["rays_o"].shape == view["rays_d"].shape == (1, 6, 10, 3)
    assert abs(view["azimuth"].item() - azimuth_deg) < 1e-4
    assert view["elevation"].item() == 30.0 and view["camera_distances"].item() == 2.0
    assert torch.allclose(view["fovy"], torch.tensor([math.pi / 3]))
    a = azimuth_deg * DEG
    expected = torch.tensor([[math.sqrt(3) * math.cos(a), math.sqrt(3) * math.sin(a), 1.0]])
    assert torch.allclose(view["camera_positions"], expected, atol=1e-5)
    assert torch.equal(view["light_positions"], view["camera_positions"])
    # Unperturbed: looks at the origin with a level horizon.
    c2w = view["c2w"][0]
    assert torch.allclose(c2w[:3, 2], expected[0] / 2, atol=1e-5)
    assert abs(c2w[2, 0].item()) < 1e-6 and c2w[2, 1] > 0
    assert torch.allclose(view["proj_mtx"][0, 0, 0], torch.tensor(math.sqrt(3) * 0.6))
    assert torch.allclose(
        view["mvp_mtx"], view["proj_mtx"] @ torch.linalg.inv(view["c2w"]), atol=1e-5
    )


def test_val_orbit():
    data = RandomCameraDataModule({**EVAL, "n_val_views": 4})
    views = data.val_batches()
    assert len(views) == 4
    for index, azimuth in enumerate([0.0, 90.0, 180.0, 270.0]):
        _check_orbit_view(views[index], index, azimuth)
    assert [v["index"].item() for v in views] == [0, 1, 2, 3]
    assert views[-1]["index"].item() == 3
    with pytest.raises(IndexError):
        views[4]


def test_test_orbit_first_and_last_views_coincide():
    data = RandomCameraDataModule({**EVAL, "n_test_views": 7})
    views = data.test_batches()
    assert len(views) == 7
    for index in range(7):
        _check_orbit_view(views[index], index, 60.0 * index)
    assert torch.allclose(views[0]["c2w"], views[6]["c2w"], atol=1e-5)


def test_eval_defaults_and_independence_from_the_random_state():
    data = RandomCameraDataModule({"eval_height": 4, "eval_width": 4})
    torch.manual_seed(0)
    first = data.val_batches()[0]
    torch.manual_seed(1)
    second = data.val_batches()[0]
    for key in ("c2w", "rays_d", "light_positions", "mvp_mtx"):
        assert torch.equal(first[key], second[key])
    assert len(data.val_batches()) == 1 and len(data.test_batches()) == 120
    assert first["elevation"].item() == 15.0 and first["azimuth"].item() == 0.0
    assert torch.allclose(first["camera_positions"].norm(), torch.tensor(1.5))
    assert torch.allclose(first["fovy"], torch.tensor([70 * DEG]))


# -- 5. resolution milestones ----------------------------------------------------------------------
def test_resolution_milestones_with_three_stages():
    data = RandomCameraDataModule(
        {
            "height": [8, 16, 32],
            "width": [6, 12, 24],
            "batch_size": [4, 2, 1],
            "resolution_milestones": [5, 10],
        }
    )
    expected = {0: (4, 8, 6), 4: (4, 8, 6), 5: (2, 16, 12), 9: (2, 16, 12), 10: (1, 32, 24)}
    expected.update({1000: (1, 32, 24), 3: (4, 8, 6)})  # going back (resume) works too
    for step, (b, h, w) in expected.items():
        data.do_update_step(0, step)
        batch = data.train_batch()
        assert batch["rays_d"].shape == (b, h, w, 3), step
        assert (batch["height"], batch["width"]) == (h, w)


def test_resolution_lists_may_mix_with_scalars():
    data = RandomCameraDataModule(
        {"height": [8, 16], "width": 4, "batch_size": [3], "resolution_milestones": [2]}
    )
    data.do_update_step(0, 2)
    assert data.train_batch()["rays_d"].shape == (3, 16, 4, 3)


@pytest.mark.parametrize("key", ["height", "width", "batch_size"])
def test_resolution_list_of_wrong_length_is_a_config_error(key):
    with pytest.raises(ConfigError, match=rf"data\.{key}"):
        RandomCameraDataModule({key: [8, 16, 32], "resolution_milestones": [10]})
    with pytest.raises(ConfigError, match=rf"data\.{key}"):
        RandomCameraDataModule({key: [8, 16]})


def test_unsorted_resolution_milestones_are_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.resolution_milestones"):
        RandomCameraDataModule({"height": [8, 16, 32], "resolution_milestones": [10, 5]})


# -- 6. batch contents -----------------------------------------------------------------------------
def test_training_batch_contents_shapes_and_dtypes():
    torch.manual_seed(0)
    data = RandomCameraDataModule({"batch_size": 3, "height": 5, "width": 7})
    batch = data.train_batch()
    shapes = {
        "rays_o": (3, 5, 7, 3),
        "rays_d": (3, 5, 7, 3),
        "c2w": (3, 4, 4),
        "mvp_mtx": (3, 4, 4),
        "proj_mtx": (3, 4, 4),
        "camera_positions": (3, 3),
        "light_positions": (3, 3),
        "elevation": (3,),
        "azimuth": (3,),
        "camera_distances": (3,),
        "fovy": (3,),
    }
    assert set(batch) == {*shapes, "height", "width"}
    for key, shape in shapes.items():
        assert batch[key].shape == shape, key
        assert batch[key].dtype == torch.float32, key
        assert torch.isfinite(batch[key]).all(), key
    assert type(batch["height"]) is int and batch["height"] == 5
    assert type(batch["width"]) is int and batch["width"] == 7


def test_training_is_deterministic_under_a_seed():
    def run():
        torch.manual_seed(123)
        data = RandomCameraDataModule({"batch_size": 2, "height": 2, "width": 2})
        return [data.train_batch() for _ in range(3)]

    for a, b in zip(run(), run(), strict=True):
        for key, value in a.items():
            assert (
                torch.equal(value, b[key]) if isinstance(value, torch.Tensor) else value == b[key]
            )


def test_top_down_views_are_valid_cameras():
    data = RandomCameraDataModule({"eval_elevation_deg": 90.0, "eval_height": 3, "eval_width": 3})
    view = data.val_batches()[0]
    rot = view["c2w"][0, :3, :3]
    assert torch.allclose(rot.T @ rot, torch.eye(3), atol=1e-5)
    assert torch.allclose(view["rays_d"][0, 1, 1], torch.tensor([0.0, 0.0, -1.0]), atol=1e-5)
    torch.manual_seed(0)
    batch = RandomCameraDataModule(
        {**NO_PERTURB, "elevation_range": [90.0, 90.0], "batch_size": 4, "height": 2, "width": 2}
    ).train_batch()
    rot = batch["c2w"][:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(4, 3, 3), atol=1e-5)
    assert torch.allclose(batch["rays_d"].norm(dim=-1), torch.ones(4, 2, 2), atol=1e-5)


@pytest.mark.parametrize("key", ["height", "width", "batch_size"])
def test_non_positive_sizes_are_a_config_error(key):
    with pytest.raises(ConfigError, match=rf"data\.{key}"):
        RandomCameraDataModule({key: 0})


# -- 7. drawing ahead --------------------------------------------------------------------------------
def _equal_batches(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k] for k, v in a.items()
    )


@pytest.mark.parametrize("handed_out", [0, 3, 16, 21])
def test_state_dict_resumes_the_stream_exactly(handed_out):
    cfg = {"batch_size": 2, "height": 3, "width": 4, "batches_per_draw": 8}
    torch.manual_seed(5)
    straight = RandomCameraDataModule(cfg)
    for _ in range(handed_out):
        straight.train_batch()
    state, rng = straight.state_dict(), torch.get_rng_state()
    expected = [straight.train_batch() for _ in range(12)]  # crosses a draw boundary

    torch.manual_seed(99)  # the resumed process has drawn something else meanwhile
    resumed = RandomCameraDataModule(cfg)
    resumed.train_batch()
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    assert all(_equal_batches(resumed.train_batch(), e) for e in expected)
    assert (state == {}) == (handed_out % 8 == 0)  # nothing pending right after a full draw


def test_load_state_dict_leaves_the_global_rng_alone():
    data = RandomCameraDataModule({"height": 2, "width": 2})
    data.train_batch()
    state = data.state_dict()
    before = torch.get_rng_state()
    RandomCameraDataModule({"height": 2, "width": 2}).load_state_dict(state)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_draw_is_capped_in_pixels(monkeypatch):
    import studio.data.random_camera as module

    calls = _capture_look_at(monkeypatch)
    monkeypatch.setattr(module, "PIXELS_PER_DRAW", 3 * 2 * 4 * 4)
    data = RandomCameraDataModule({"batch_size": 2, "height": 4, "width": 4})
    for _ in range(7):
        data.train_batch()
    assert [len(c[0]) for c in calls] == [6, 6, 6]  # three batches of two cameras per draw


def test_one_batch_per_draw_draws_on_every_call():
    data = RandomCameraDataModule({"height": 2, "width": 2, "batches_per_draw": 1})
    torch.manual_seed(4)
    first = data.train_batch()
    torch.manual_seed(4)
    assert _equal_batches(data.train_batch(), first)
    assert data.state_dict() == {}


def test_non_positive_batches_per_draw_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.batches_per_draw"):
        RandomCameraDataModule({"batches_per_draw": 0})


@pytest.mark.gpu
def test_drawn_batches_live_on_the_module_device():
    cuda = torch.device("cuda")
    torch.manual_seed(6)
    on_cpu = RandomCameraDataModule({"batch_size": 2, "height": 4, "width": 4}).train_batch()
    torch.manual_seed(6)
    data = RandomCameraDataModule({"batch_size": 2, "height": 4, "width": 4}, device=cuda)
    on_gpu = data.train_batch()
    for key, value in on_cpu.items():
        if isinstance(value, torch.Tensor):
            assert on_gpu[key].is_cuda, key
            assert torch.equal(on_gpu[key].cpu(), value), key
