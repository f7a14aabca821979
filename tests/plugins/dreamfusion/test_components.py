"""Geometries, materials and backgrounds of studio-dreamfusion."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from studio.errors import ConfigError
from studio.registry import get_registry
from studio_dreamfusion.activations import SLOPES, get_activation, trunc_exp
from studio_dreamfusion.backgrounds import NeuralEnvironmentMap, SolidColor, Textured
from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
from studio_dreamfusion.geometry.volume_grid import VolumeGrid
from studio_dreamfusion.materials import DiffuseWithPointLight, NeuralRadiance, NoMaterial

GRID = {
    "otype": "HashGrid",
    "n_levels": 4,
    "n_features_per_level": 2,
    "log2_hashmap_size": 12,
    "base_resolution": 4,
    "per_level_scale": 1.5,
}


def test_everything_is_registered_by_studio_dreamfusion():
    registry = get_registry()
    expected = {
        "geometry": ["implicit-volume", "volume-grid"],
        "material": ["diffuse-with-point-light", "neural-radiance", "no-material"],
        "background": ["neural-environment-map", "solid-color", "textured"],
        "renderer": ["nerf-volume"],
    }
    for kind, names in expected.items():
        for name in names:
            entry = registry.get(kind, name)
            assert entry.plugin.distribution == "studio-dreamfusion"
            assert registry.load(kind, name).__name__


def test_activations():
    x = torch.tensor([-1.0, 0.0, 20.0], requires_grad=True)
    y = trunc_exp(x)
    y.sum().backward()
    assert torch.allclose(y, torch.exp(x.detach()))
    assert torch.allclose(x.grad, torch.exp(x.detach().clamp(max=15)))
    assert get_activation("scale_-11_01")(torch.tensor([-1.0, 1.0])).tolist() == [0.0, 1.0]
    assert get_activation("shifted_softplus")(torch.tensor([1.0])).item() == pytest.approx(
        math.log(2)
    )
    with pytest.raises(ConfigError, match="unknown activation 'sigmoidd'"):
        get_activation("sigmoidd")


@pytest.mark.parametrize(
    ("bias", "point", "expected"),
    [
        ("blob_magic3d", [0.25, 0, 0], 10 * (1 - 0.25 / 0.5)),
        ("blob_dreamfusion", [0.5, 0, 0], 10 * math.exp(-0.5)),
        (-2.0, [0.3, 0.1, 0], -2.0),
    ],
)
def test_density_bias_before_activation(bias, point, expected):
    geometry = ImplicitVolume(
        {
            "pos_encoding_config": GRID,
            "density_bias": bias,
            "density_activation": "none",
            "radius": 1.0,
        }
    )
    with torch.no_grad():
        geometry.encoding.params.zero_()  # raw density 0: only the bias remains
    assert geometry.forward_density(torch.tensor([point])).item() == pytest.approx(
        expected, rel=1e-5
    )


@pytest.mark.parametrize("normal_type", ["finite_difference", "finite_difference_forward"])
def test_finite_difference_normals_of_the_blob_point_outward(normal_type):
    geometry = ImplicitVolume(
        {
            "pos_encoding_config": GRID,
            "normal_type": normal_type,
            "density_bias": "blob_dreamfusion",
            "radius": 1.0,
            "finite_difference_normal_eps": 1e-3,
        }
    )
    with torch.no_grad():
        geometry.encoding.params.zero_()
    points = F.normalize(torch.randn(64, 3), dim=-1) * 0.4
    with torch.no_grad():
        out = geometry(points, output_normal=True)
    cosine = (out["normal"] * F.normalize(points, dim=-1)).sum(-1)
    assert cosine.min() > 0.999


def test_analytic_normals_agree_with_central_differences():
    torch.manual_seed(0)
    cfg = {
        "pos_encoding_config": GRID,
        "density_bias": 0.0,
        "radius": 1.0,
        "finite_difference_normal_eps": 1e-4,
    }
    analytic = ImplicitVolume({**cfg, "normal_type": "analytic"})
    central = ImplicitVolume({**cfg, "normal_type": "finite_difference"})
    with torch.no_grad():
        analytic.encoding.params.normal_(0, 1.0)
    central.load_state_dict(analytic.state_dict())
    points = torch.rand(256, 3) * 1.6 - 0.8
    a = analytic(points, output_normal=True)["normal"]
    b = central(points, output_normal=True)["normal"]
    cosine = (a * b).sum(-1)
    assert cosine.median() > 0.999  # trilinear cells: differences agree except at cell borders


@pytest.mark.parametrize("bias", ["blob_magic3d", "blob_dreamfusion"])
@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "autograd"])
def test_analytic_normals_of_the_blob_point_outward(bias, explicit):
    """The blob is part of the density the normals differentiate (the reference's
    implicit-volume does not detach it), so a fresh field's normals point away from the centre."""
    geometry = ImplicitVolume(
        {"pos_encoding_config": GRID, "normal_type": "analytic", "density_bias": bias}
    )
    geometry.explicit_analytic_normals = explicit
    with torch.no_grad():
        geometry.encoding.params.zero_()
    points = F.normalize(torch.randn(64, 3), dim=-1) * 0.3
    out = geometry(points, output_normal=True)
    cosine = (out["normal"] * F.normalize(points, dim=-1)).sum(-1)
    assert cosine.min() > 0.999


EXPLICIT_CASES = [
    # density activation, bias, encoding otype, include_xyz
    ("softplus", "blob_magic3d", "ProgressiveBandHashGrid", False),
    ("trunc_exp", "blob_dreamfusion", "HashGrid", True),
    ("exp", 0.5, "HashGrid", False),
    ("shifted_softplus", "blob_magic3d", "HashGrid", False),
]


@pytest.mark.parametrize(("activation", "bias", "otype", "include_xyz"), EXPLICIT_CASES)
def test_explicit_analytic_normals_equal_the_double_backward(activation, bias, otype, include_xyz):
    """Same density, features, normals and parameter gradients of a loss on all three, whether the
    normal's gradient is carried forward explicitly or taken by autograd's double backward."""
    torch.manual_seed(0)
    grid = {**GRID, "otype": otype, "include_xyz": include_xyz}
    if otype == "ProgressiveBandHashGrid":
        grid["start_level"] = 2
    geometry = ImplicitVolume(
        {
            "radius": 1.5,
            "normal_type": "analytic",
            "density_activation": activation,
            "density_bias": bias,
            "pos_encoding_config": grid,
        }
    )
    with torch.no_grad():
        for param in geometry.parameters():
            param.uniform_(-0.5, 0.5)
    points = (torch.rand(400, 3) * 2 - 1) * 1.6  # some outside the box: clamped, no gradient
    assert geometry._explicit_normals_apply(points)
    explicit = geometry(points, output_normal=True)
    geometry.explicit_analytic_normals = False
    reference = geometry(points, output_normal=True)
    weights = {k: torch.randn_like(v) for k, v in explicit.items()}

    def gradients(out):
        loss = sum((out[k] * weights[k]).sum() for k in ("density", "features", "normal"))
        return torch.autograd.grad(loss, list(geometry.parameters()))

    for key in ("density", "features", "normal"):
        assert torch.allclose(explicit[key], reference[key], atol=1e-5), key
    for got, want in zip(gradients(explicit), gradients(reference), strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max())


def test_positions_that_require_grad_take_the_autograd_path():
    geometry = ImplicitVolume({"pos_encoding_config": GRID, "normal_type": "analytic"})
    points = (torch.rand(16, 3) - 0.5).requires_grad_(True)
    assert not geometry._explicit_normals_apply(points)
    out = geometry(points, output_normal=True)
    (grad,) = torch.autograd.grad(out["normal"].sum(), points)
    assert grad.abs().sum() > 0


def test_activation_slopes_are_the_derivatives():
    x = torch.linspace(-30.0, 30.0, 601, dtype=torch.float64).requires_grad_(True)
    for name, slope in SLOPES.items():
        (want,) = torch.autograd.grad(get_activation(name)(x).sum(), x)
        assert torch.allclose(slope(x.detach()), want, atol=1e-12), name


def test_analytic_normals_keep_the_graph_in_training_and_detach_in_eval():
    geometry = ImplicitVolume({"pos_encoding_config": GRID, "normal_type": "analytic"})
    points = torch.rand(16, 3) - 0.5
    out = geometry(points, output_normal=True)
    out["normal"].sum().backward()
    assert geometry.encoding.params.grad is not None
    with torch.no_grad():
        assert not geometry(points, output_normal=True)["normal"].requires_grad


def test_pred_normals_and_no_features():
    geometry = ImplicitVolume(
        {"pos_encoding_config": GRID, "normal_type": "pred", "n_feature_dims": 0}
    )
    out = geometry(torch.rand(5, 3), output_normal=True)
    assert "features" not in out
    assert torch.allclose(out["normal"].norm(dim=-1), torch.ones(5))


def test_volume_grid_trilinear_lookup_and_scale():
    grid = VolumeGrid(
        {
            "grid_size": [2, 2, 2],
            "n_feature_dims": 1,
            "density_bias": 0.0,
            "density_activation": "none",
            "radius": 1.0,
        }
    )
    with torch.no_grad():
        grid.grid.zero_()
        grid.grid[0, 0, 1, 1, 1] = 8.0  # voxel (z=1, y=1, x=1) at world (+.5, +.5, +.5)
    value = grid.forward_density(torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]))
    assert value[:, 0].tolist() == pytest.approx([8.0, 1.0])  # centre: 1/8 of the corner
    assert isinstance(grid.density_scale, torch.nn.Parameter)
    blob = VolumeGrid({"grid_size": [4, 4, 4]})
    assert not isinstance(blob.density_scale, torch.nn.Parameter)
    out = blob(torch.rand(7, 3) - 0.5, output_normal=True)
    assert out["features"].shape == (7, 3) and out["normal"].shape == (7, 3)


def test_diffuse_shading_modes_and_probabilities():
    material = DiffuseWithPointLight({"ambient_only_steps": 10})
    features = torch.zeros(1, 3)  # albedo 0.5
    kwargs = {
        "positions": torch.zeros(1, 3),
        "shading_normal": torch.tensor([[0.0, 0.0, 1.0]]),
        "light_positions": torch.tensor([[0.0, 0.0, 2.0]]),
    }
    assert material(features, shading="albedo", **kwargs).tolist() == [[0.5, 0.5, 0.5]]
    assert material(features, shading="textureless", **kwargs)[0].tolist() == pytest.approx(
        [1.0] * 3
    )
    assert material(features, shading="diffuse", **kwargs)[0].tolist() == pytest.approx([0.5] * 3)
    back = {**kwargs, "light_positions": torch.tensor([[0.0, 0.0, -2.0]])}
    assert material(features, shading="diffuse", **back)[0].tolist() == pytest.approx([0.05] * 3)
    assert material(features, shading="diffuse", ambient_ratio=0.3, **back)[
        0
    ].tolist() == pytest.approx([0.15] * 3)

    material.train()
    material.do_update_step(0, 5)
    assert {material.choose_shading() for _ in range(50)} == {"albedo"}  # warm-up
    material.do_update_step(0, 10)
    random.seed(0)
    draws = [material.choose_shading() for _ in range(20000)]
    for mode, p in [("albedo", 0.25), ("textureless", 0.375), ("diffuse", 0.375)]:
        share = draws.count(mode) / len(draws)
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / len(draws)), mode
    material.eval()
    assert material.choose_shading() == "diffuse"


def test_no_material_and_neural_radiance():
    assert NoMaterial({"n_output_dims": 4, "color_activation": "none"})(torch.ones(2, 4)).shape == (
        2,
        4,
    )
    with pytest.raises(Exception, match="n_output_dims is 3"):
        NoMaterial({})(torch.ones(2, 4))
    mlp = NoMaterial(
        {
            "input_feature_dims": 5,
            "mlp_network_config": {"otype": "VanillaMLP", "n_neurons": 8, "n_hidden_layers": 1},
        }
    )
    assert mlp(torch.ones(3, 5)).shape == (3, 3)
    radiance = NeuralRadiance({"input_feature_dims": 8})
    out = radiance(torch.randn(6, 8), viewdirs=F.normalize(torch.randn(6, 3), dim=-1))
    assert out.shape == (6, 3) and ((out > 0) & (out < 1)).all()


def test_backgrounds():
    dirs = F.normalize(torch.randn(3, 4, 5, 3), dim=-1)
    env = NeuralEnvironmentMap({"random_aug": True, "random_aug_prob": 1.0})
    env.eval()
    assert env(dirs).shape == (3, 4, 5, 3)
    env.train()
    augmented = env(dirs)
    for b in range(3):  # one random colour per image
        assert torch.allclose(augmented[b], augmented[b, :1, :1].expand(4, 5, 3))
    assert not torch.allclose(augmented[0, 0, 0], augmented[1, 0, 0])
    fixed = NeuralEnvironmentMap({"eval_color": [0.2, 0.3, 0.4]}).eval()
    assert fixed(dirs)[1, 2, 3].tolist() == pytest.approx([0.2, 0.3, 0.4])

    solid = SolidColor({"color": [0.1, 0.2, 0.3, 0.4], "n_output_dims": 4, "learned": True})
    assert solid(dirs).shape == (3, 4, 5, 4)
    assert isinstance(solid.env_color, torch.nn.Parameter)
    with pytest.raises(ConfigError, match="color has 3 values but n_output_dims is 4"):
        SolidColor({"n_output_dims": 4})

    textured = Textured({"n_output_dims": 4, "height": 8, "width": 16})
    assert textured(dirs).shape == (3, 4, 5, 4)
    uv = Textured.spherical_uv(torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    assert torch.allclose(uv, torch.tensor([[0.0, 0.5], [0.5, 0.5], [0.5, 0.25]]))
