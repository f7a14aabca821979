"""``tetrahedra-sdf-grid`` on its own: state, surface extraction, gradients, caching, features."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from studio.config.resolve import validate_tree
from studio.errors import ConfigError, StudioError
from studio.registry import get_registry
from studio_dreamfusion.networks import defaults
from studio_magic3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid

GRID = {
    "otype": "HashGrid",
    "n_levels": 4,
    "n_features_per_level": 2,
    "log2_hashmap_size": 12,
    "base_resolution": 4,
    "per_level_scale": 1.5,
}
RES = 32
CELL = 2.0 / RES  # world size of one grid cell with the default box [-1, 1]^3


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_grid(**overrides) -> TetrahedraSDFGrid:
    torch.manual_seed(0)
    return TetrahedraSDFGrid(
        {"isosurface_resolution": RES, "pos_encoding_config": GRID, **overrides}
    )


def set_sdf(grid: TetrahedraSDFGrid, fn) -> None:
    with torch.no_grad():
        grid.sdf.copy_(fn(grid.grid_points()))


def sphere(centre=(0.0, 0.0, 0.0), radius: float = 0.45):
    c = torch.tensor(centre)
    return lambda p: (p - c).norm(dim=-1, keepdim=True) - radius


def test_registered_by_studio_magic3d():
    registry = get_registry()
    entry = registry.get("geometry", "tetrahedra-sdf-grid")
    assert entry.plugin.distribution == "studio-magic3d"
    assert registry.load("geometry", "tetrahedra-sdf-grid") is TetrahedraSDFGrid


def test_config_defaults_follow_the_reference():
    cfg = TetrahedraSDFGrid.Config()
    assert cfg.radius == 1.0 and cfg.isosurface_resolution == 64
    assert cfg.isosurface_deformable_grid and not cfg.isosurface_remove_outliers
    assert type(cfg.isosurface_outlier_n_faces_threshold) is float
    assert cfg.isosurface_outlier_n_faces_threshold == 0.01
    assert (cfg.n_input_dims, cfg.n_feature_dims) == (3, 3)
    assert cfg.pos_encoding_config == defaults.hash_grid()
    assert cfg.pos_encoding_config["per_level_scale"] == 1.447269237440378
    assert cfg.mlp_network_config == defaults.mlp("VanillaMLP", 64, 1)
    assert not cfg.geometry_only and not cfg.fix_geometry
    # 64 here ~ 128 in the reference: (64 + 1)^3 = 274625 vertices vs about 2.75e5 there
    grid = TetrahedraSDFGrid({"geometry_only": True})
    assert grid.sdf.shape == (274625, 1) and grid.deformation.shape == (274625, 3)


def test_state_shapes_and_checkpoint_keys():
    grid = make_grid()
    n = (RES + 1) ** 3
    params = dict(grid.named_parameters())
    assert params["sdf"].shape == (n, 1) and params["deformation"].shape == (n, 3)
    assert not grid.sdf.any() and not grid.deformation.any()
    assert torch.equal(grid.isosurface_bbox, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    state = grid.state_dict()
    assert {"sdf", "deformation", "isosurface_bbox"} <= set(state)
    assert "bbox" not in state  # the fixed box is derived from radius
    assert grid.grid_points().shape == (n, 3)
    rigid = make_grid(isosurface_deformable_grid=False)
    assert rigid.deformation is None and "deformation" not in rigid.state_dict()


def test_fresh_grid_has_no_surface():
    with pytest.raises(StudioError, match=r"never changes sign.*geometry_convert_from"):
        make_grid().isosurface()


def test_sphere_sdf_gives_the_sphere():
    grid = make_grid(radius=1.0)
    centre, radius = (0.1, -0.05, 0.02), 0.45
    set_sdf(grid, sphere(centre, radius))
    mesh = grid.isosurface()
    offset = mesh.v_pos - torch.tensor(centre)
    error = offset.norm(dim=-1) - radius
    print(
        f"mean radius error {error.mean().item() / CELL:.4%} of a cell, max {error.abs().max().item() / CELL:.3%}"
    )
    assert mesh.n_faces > 5000
    # linear interpolation of a convex SDF puts crossings just inside the sphere: the chord of
    # a cell's body diagonal misses the sphere by at most 3 CELL^2 / (8 r) ~ 5% of a cell
    assert error.max() <= 1e-6
    assert error.abs().mean() < 0.015 * CELL
    assert error.abs().max() < 0.06 * CELL
    # outward winding, world-space extras
    assert (mesh.v_nrm * offset / offset.norm(dim=-1, keepdim=True)).sum(-1).min() > 0.9
    assert torch.equal(mesh.extras["bbox"], grid.isosurface_bbox)
    assert mesh.extras["grid_level"] is grid.sdf


def test_isosurface_bbox_places_the_grid():
    grid = make_grid()
    with torch.no_grad():
        grid.isosurface_bbox.copy_(torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]))
    set_sdf(grid, sphere(radius=0.3))
    radius = grid.isosurface().v_pos.norm(dim=-1)
    assert radius.mean().item() == pytest.approx(0.3, abs=0.01 * CELL)


def test_deformation_moves_vertices_by_tanh_over_resolution():
    grid = make_grid()
    set_sdf(grid, sphere(radius=0.45))
    still = grid.isosurface().v_pos.detach()
    with torch.no_grad():
        grid.deformation[:, 0] = math.atanh(0.5)  # half a cell along x everywhere
    moved = grid.isosurface().v_pos.detach()
    assert torch.allclose(moved - still, torch.tensor([0.5 * CELL, 0.0, 0.0]), atol=1e-5)
    rigid = make_grid(isosurface_deformable_grid=False)
    set_sdf(rigid, sphere(radius=0.45))
    assert torch.allclose(rigid.isosurface().v_pos, still)


def test_surface_is_differentiable_in_sdf_and_deformation():
    grid = make_grid()
    set_sdf(grid, sphere(radius=0.45))
    mesh = grid.isosurface()
    assert mesh.requires_grad
    mesh.v_pos.square().sum().backward()
    near = grid.sdf.detach().abs().squeeze(-1) < 2 * CELL
    for grad in (grid.sdf.grad, grid.deformation.grad):
        touched = grad.abs().sum(-1) > 0
        assert touched.sum() > 1000
        assert not touched[~near].any()  # only vertices of edges crossing the surface
    # raising the level at either end of a crossing edge moves its vertex towards the inside
    # end, so sum |v|^2 falls: the gradient is negative at (nearly) every vertex it touches
    touched = grid.sdf.grad.squeeze(-1) != 0
    assert (grid.sdf.grad.squeeze(-1)[touched] < 0).float().mean() > 0.95


def test_fix_geometry_keeps_buffers_and_caches_the_mesh():
    grid = make_grid(fix_geometry=True)
    trained = dict(grid.named_parameters())
    assert "sdf" not in trained and "deformation" not in trained
    assert all(n.startswith(("encoding.", "feature_network.")) for n in trained)
    assert {"sdf", "deformation", "isosurface_bbox"} <= {n for n, _ in grid.named_buffers()}
    set_sdf(grid, sphere(radius=0.45))
    first = grid.isosurface()
    assert not first.requires_grad
    assert grid.isosurface() is first  # computed once
    # loading a state dict replaces the mesh
    state = grid.state_dict()
    state["sdf"] = sphere(radius=0.3)(grid.grid_points())
    grid.load_state_dict(state)
    second = grid.isosurface()
    assert second is not first
    assert second.v_pos.norm(dim=-1).mean().item() == pytest.approx(0.3, abs=0.02 * CELL)
    # so does any in-place change of the grid's tensors
    with torch.no_grad():
        grid.deformation.fill_(math.atanh(0.5))
    third = grid.isosurface()
    assert third is not second
    assert torch.allclose(third.v_pos.mean(0), second.v_pos.mean(0) + 0.5 * CELL, atol=1e-5)


def test_features_and_export():
    grid = make_grid(n_feature_dims=5)
    points = torch.rand(4, 7, 3) * 2 - 1
    features = grid(points)["features"]
    assert features.shape == (4, 7, 5)
    assert torch.equal(grid.export(points.reshape(-1, 3))["features"], features.reshape(-1, 5))
    features.sum().backward()
    assert grid.encoding.params.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="normals from its mesh"):
        grid(points, output_normal=True)


def test_geometry_only_has_no_feature_field():
    grid = make_grid(geometry_only=True, pos_encoding_config={"otype": "not checked"})
    assert grid.encoding is None and grid.feature_network is None
    assert {n for n, _ in grid.named_parameters()} == {"sdf", "deformation"}
    assert grid(torch.zeros(3, 3)) == {} and grid.export(torch.zeros(3, 3)) == {}


@pytest.mark.parametrize("threshold", [0.1, 1000])  # fraction of the sphere, face count
def test_outlier_removal_drops_a_small_blob(threshold):
    big, blob = sphere(radius=0.45), sphere(centre=(0.75, 0.75, 0.75), radius=0.1)
    blob_centre = torch.tensor([0.75, 0.75, 0.75])

    def blob_vertices(mesh) -> int:
        return int(((mesh.v_pos - blob_centre).norm(dim=-1) < 0.2).sum())

    def both(p):
        return torch.minimum(big(p), blob(p))

    kept = make_grid(isosurface_remove_outliers=False)
    set_sdf(kept, both)
    cleaned = make_grid(
        isosurface_remove_outliers=True, isosurface_outlier_n_faces_threshold=threshold
    )
    set_sdf(cleaned, both)
    with torch.no_grad():
        full = kept.isosurface()
        mesh = cleaned.isosurface()
    assert blob_vertices(full) > 20
    assert blob_vertices(mesh) == 0
    blob_faces = (full.v_pos[full.t_pos_idx[:, 0]] - blob_centre).norm(dim=-1) < 0.2
    assert mesh.n_faces == full.n_faces - int(blob_faces.sum())
    # never while the mesh carries gradients
    assert blob_vertices(cleaned.isosurface()) == blob_vertices(full)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"isosurface_resolution": 0}, r"system\.geometry\.isosurface_resolution=0"),
        ({"n_input_dims": 2}, r"system\.geometry\.n_input_dims=2"),
        ({"n_feature_dims": 0}, r"system\.geometry\.n_feature_dims=0.*geometry_only"),
        ({"isosurface_outlier_n_faces_threshold": -1}, "isosurface_outlier_n_faces_threshold"),
        ({"pos_encoding_config": {"otype": "HashGird"}}, r"pos_encoding_config\.otype='HashGird'"),
        ({"pos_encoding_config": {**GRID, "n_level": 3}}, r"pos_encoding_config\.n_level"),
        ({"mlp_network_config": {"otype": "VanillaMLP", "n_neurons": "64"}}, "n_neurons"),
        ({"mlp_network_config": []}, r"system\.geometry\.mlp_network_config"),
    ],
)
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_tree(TetrahedraSDFGrid.Config, overrides, "system.geometry", TetrahedraSDFGrid)
    with pytest.raises(ConfigError, match=match):
        TetrahedraSDFGrid(overrides)


def test_config_validation_accepts_valid_and_geometry_only_configs():
    ok = {"pos_encoding_config": {**GRID, "otype": "hashgrid"}, "isosurface_resolution": 16}
    out = validate_tree(TetrahedraSDFGrid.Config, ok, "system.geometry", TetrahedraSDFGrid)
    assert out["isosurface_resolution"] == 16
    shape_only = {"geometry_only": True, "mlp_network_config": {"otype": "unused"}}
    validate_tree(TetrahedraSDFGrid.Config, shape_only, "system.geometry", TetrahedraSDFGrid)
