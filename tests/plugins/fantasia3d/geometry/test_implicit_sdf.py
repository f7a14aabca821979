"""``implicit-sdf`` on its own: config, networks, field, level, normals, deformation, and the
plumbing of ``initialize_shape`` (its accuracy is in test_shape_fit.py)."""

from __future__ import annotations

import logging

import attrs
import pytest
import torch

from studio.errors import ConfigError
from studio.registry import get_registry
from studio_dreamfusion.networks import defaults
from studio_fantasia3d.geometry.implicit_sdf import ImplicitSDF
from tests.plugins.fantasia3d.geometry.surfaces import (
    TINY_GRID,
    box_points,
    make_sdf,
    sphere_points,
)

LOGGER = "studio_fantasia3d.geometry.implicit_sdf"


def test_registered_by_studio_fantasia3d():
    assert get_registry().load("geometry", "implicit-sdf") is ImplicitSDF


def test_config_defaults_follow_the_reference():
    cfg = ImplicitSDF.Config()
    assert (cfg.n_input_dims, cfg.n_feature_dims) == (3, 3)
    assert cfg.pos_encoding_config == defaults.hash_grid()
    assert cfg.mlp_network_config == defaults.mlp("VanillaMLP", 64, 1)
    assert cfg.normal_type == "finite_difference" and cfg.finite_difference_normal_eps == 0.01
    assert cfg.shape_init is None and cfg.shape_init_params is None
    assert (cfg.shape_init_mesh_up, cfg.shape_init_mesh_front) == ("+z", "+x")
    assert not cfg.force_shape_init
    assert cfg.sdf_bias == 0.0 and cfg.sdf_bias_params is None
    assert not cfg.isosurface_remove_outliers
    assert cfg.isosurface_threshold == 0.0 and cfg.isosurface_method == "mt"
    assert (cfg.shape_init_steps, cfg.shape_init_n_points, cfg.shape_init_lr) == (
        1000,
        10_000,
        1e-3,
    )
    assert ImplicitSDF.field_is_sdf


def test_networks_share_one_encoding():
    plain = make_sdf()
    assert {name.split(".")[0] for name in plain.state_dict()} == {
        "encoding",
        "sdf_network",
        "feature_network",
    }
    full = make_sdf(normal_type="pred", isosurface_deformable_grid=True, n_feature_dims=0)
    assert {name.split(".")[0] for name in full.state_dict()} == {
        "encoding",
        "sdf_network",
        "normal_network",
        "deformation_network",
    }
    assert full.feature_network is None
    assert full.deformation_network.layers[-1].out_features == 3


def test_forward_outputs():
    geometry = make_sdf(n_feature_dims=5)
    points = box_points(64).reshape(4, 16, 3)
    out = geometry(points)
    assert set(out) == {"sdf", "features"}
    assert out["sdf"].shape == (64, 1) and out["features"].shape == (64, 5)
    assert torch.allclose(out["sdf"], geometry.forward_sdf(points))
    assert torch.equal(geometry.forward_field(points), geometry.forward_sdf(points))
    with_normal = geometry(points, output_normal=True)
    assert set(with_normal) == {"sdf", "features", "normal", "shading_normal", "sdf_grad"}
    assert torch.allclose(with_normal["normal"].norm(dim=-1), torch.ones(64), atol=1e-5)
    assert "features" not in make_sdf(n_feature_dims=0)(points)
    assert make_sdf(n_feature_dims=0).export(points) == {}
    assert make_sdf().export(points)["features"].shape == (64, 3)
    assert set(make_sdf(normal_type=None)(points, output_normal=True)) == {"sdf", "features"}


def test_level_is_the_sdf_minus_the_threshold():
    geometry = make_sdf()
    field = torch.tensor([[-0.2], [0.0], [0.3]])
    assert torch.equal(geometry.forward_level(field, 0.1), field - 0.1)


def test_sphere_bias_gives_a_sphere_with_outward_normals():
    radius = 0.45
    for normal_type in ("finite_difference", "finite_difference_forward", "analytic"):
        geometry = make_sdf(
            sdf_bias="sphere",
            sdf_bias_params=radius,
            normal_type=normal_type,
            isosurface_resolution=32,
        )
        surface = sphere_points(500, radius)
        out = geometry(surface, output_normal=True)
        assert out["sdf"].abs().max() < 1e-3  # a fresh network adds almost nothing
        assert ((out["normal"] * surface).sum(-1) / radius).min() > 0.99
        assert (box_points(100) * 0 + geometry.forward_sdf(torch.zeros(1, 3))).max() < 0
    mesh = geometry.isosurface()
    assert (mesh.v_pos.norm(dim=-1) - radius).abs().max() < 0.01
    assert ((mesh.v_nrm * mesh.v_pos).sum(-1) / radius).min() > 0.9  # wound outwards


def test_ellipsoid_and_constant_biases():
    radii = torch.tensor([0.3, 0.3, 0.8])
    geometry = make_sdf(sdf_bias="ellipsoid", sdf_bias_params=radii.tolist())
    surface = sphere_points(500, 1.0) * radii
    assert geometry.forward_sdf(surface).abs().max() < 1e-3
    plain = make_sdf(sdf_bias=0.0)
    shifted = make_sdf(sdf_bias=0.25)
    points = box_points(100)
    assert torch.allclose(shifted.forward_sdf(points), plain.forward_sdf(points) + 0.25)


def test_normals_are_plus_the_sdf_gradient():
    """Finite differences and autograd agree, and neither flips the sign (the reference's
    analytic branch returned -grad sdf)."""
    geometry = make_sdf(sdf_bias="sphere", sdf_bias_params=0.5)
    points = box_points(200) * 0.9
    central = geometry(points, output_normal=True)
    geometry.cfg = attrs.evolve(geometry.cfg, normal_type="analytic")
    analytic = geometry(points, output_normal=True)
    assert torch.allclose(central["sdf_grad"], analytic["sdf_grad"], atol=1e-2)
    radial = points / points.norm(dim=-1, keepdim=True)
    assert ((analytic["normal"] * radial).sum(-1) > 0.99).all()


def test_analytic_normals_are_differentiable_only_with_grad():
    geometry = make_sdf(normal_type="analytic")
    points = box_points(32)
    out = geometry(points, output_normal=True)
    assert out["normal"].requires_grad
    out["normal"].sum().backward()
    assert geometry.encoding.params.grad is not None
    with torch.no_grad():
        detached = geometry(points, output_normal=True)
    assert not any(value.requires_grad for value in detached.values())
    assert torch.allclose(detached["normal"], out["normal"].detach(), atol=1e-6)


def test_deformation_field_moves_the_grid():
    geometry = make_sdf(
        sdf_bias="sphere",
        sdf_bias_params=0.5,
        isosurface_deformable_grid=True,
        isosurface_resolution=16,
        isosurface_coarse_to_fine=False,
    )
    points = box_points(10)
    assert geometry.forward_deformation(points).shape == (10, 3)
    with torch.no_grad():
        mesh = geometry.isosurface()
        grid = 2.0 * mesh.extras["grid_vertices"] - 1.0  # deformed, world space
        undeformed = grid - torch.tanh(mesh.extras["grid_deformation"]) / 16 * 2.0
        expected = geometry.forward_deformation(undeformed)
    assert torch.allclose(mesh.extras["grid_deformation"], expected, atol=1e-5)
    with pytest.raises(ConfigError, match="isosurface_deformable_grid must be false"):
        make_sdf().forward_deformation(points)


def test_one_extraction_encodes_the_grid_once_for_sdf_and_deformation():
    geometry = make_sdf(
        sdf_bias="sphere",
        sdf_bias_params=0.5,
        isosurface_deformable_grid=True,
        isosurface_resolution=12,
        isosurface_coarse_to_fine=False,
    )
    encoded_sizes = []
    geometry.encoding.register_forward_hook(lambda m, args, out: encoded_sizes.append(len(out)))
    mesh = geometry.isosurface()
    assert encoded_sizes == [13**3]
    mesh.v_pos.sum().backward()  # gradients reach every network through the shared encoding
    for network in (geometry.sdf_network, geometry.deformation_network, geometry.encoding):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())
    # the offsets are those a separate encoding of the undeformed grid gives
    deformation = mesh.extras["grid_deformation"].detach()
    grid = 2.0 * mesh.extras["grid_vertices"].detach() - 1.0 - torch.tanh(deformation) / 12 * 2.0
    with torch.no_grad():
        assert torch.allclose(geometry.forward_deformation(grid), deformation, atol=1e-5)
    assert len(encoded_sizes) == 2  # another tensor: encoded anew


def test_density_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="nvdiff-rasterizer"):
        make_sdf().forward_density(box_points(4))


# -- initialize_shape plumbing ----------------------------------------------------------------


def sphere_init(**config):
    return make_sdf(
        shape_init="sphere",
        shape_init_params=0.5,
        shape_init_steps=6,
        shape_init_n_points=256,
        **config,
    )


def test_initialize_shape_is_deterministic_given_the_seed():
    states = []
    for _ in range(2):
        geometry = sphere_init()
        torch.manual_seed(123)
        loss = geometry.initialize_shape()
        states.append(geometry.state_dict())
    assert loss is not None and loss > 0
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    geometry = sphere_init()
    torch.manual_seed(124)
    geometry.initialize_shape()
    assert not torch.equal(geometry.state_dict()["encoding.params"], states[0]["encoding.params"])


def test_initialize_shape_logs_progress_and_reads_its_settings(caplog):
    geometry = sphere_init()
    points = box_points(2000)
    target = points.norm(dim=-1, keepdim=True) - 0.5

    def mse() -> float:
        with torch.no_grad():
            return float((geometry.forward_sdf(points) - target).square().mean())

    before = mse()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        geometry.initialize_shape(log_every=2, lr=1e-2)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "fitting the SDF to sphere 0.5, 6 Adam steps of 256 points" in messages[0]
    assert [m.split(",")[0] for m in messages[1:4]] == [
        f"shape init: step {s}/6" for s in (2, 4, 6)
    ]
    assert "done in" in messages[-1]
    assert mse() < 0.9 * before  # it fits the sphere
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        geometry.initialize_shape(n_steps=3, n_points=16, log_every=1)
    assert sum("init: step" in r.getMessage() for r in caplog.records) == 3


def test_initialize_shape_skips_without_a_shape_or_with_weights(caplog):
    geometry = make_sdf()
    state = {k: v.clone() for k, v in geometry.state_dict().items()}
    assert geometry.initialize_shape() is None
    loaded = sphere_init()
    loaded.cfg = attrs.evolve(loaded.cfg, weights="run/ckpts/last.ckpt:geometry")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert loaded.initialize_shape() is None
    assert "weights are loaded" in caplog.text
    loaded.cfg = attrs.evolve(loaded.cfg, force_shape_init=True)
    assert loaded.initialize_shape() is not None
    assert all(torch.equal(v, state[k]) for k, v in geometry.state_dict().items())


def test_initialize_shape_under_no_grad_and_with_a_mesh(tmp_path):
    import trimesh

    path = tmp_path / "ball.obj"
    trimesh.creation.icosphere(subdivisions=2, radius=0.5).export(path)
    geometry = make_sdf(
        TINY_GRID,
        shape_init=f"mesh:{path}",
        shape_init_params=0.6,
        shape_init_steps=4,
        shape_init_n_points=128,
    )
    with torch.no_grad():
        assert geometry.initialize_shape() is not None
