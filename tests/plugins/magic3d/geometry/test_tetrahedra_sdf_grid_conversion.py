"""``TetrahedraSDFGrid.create_from``: from an implicit volume, an implicit SDF, another grid."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import torch

from studio.api import BaseExplicitGeometry, BaseImplicitGeometry
from studio.errors import ConfigError
from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
from studio_magic3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid

GRID = {
    "otype": "HashGrid",
    "n_levels": 6,
    "n_features_per_level": 2,
    "log2_hashmap_size": 14,
    "base_resolution": 8,
    "per_level_scale": 1.5,
}
MLP = {
    "otype": "VanillaMLP",
    "activation": "ReLU",
    "output_activation": "none",
    "n_neurons": 32,
    "n_hidden_layers": 1,
}
CENTRE, RADIUS = torch.tensor([0.15, -0.1, 0.05]), 0.4
THRESHOLD = 25.0  # implicit-volume's default isosurface level
RES = 32
BOX_SIDE = 2.0  # the geometries' [-1, 1]^3


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- helpers -----------------------------------------------------------------------------------


def nearest_distance(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each point of ``a`` the distance to the nearest point of ``b``."""
    return torch.cat([torch.cdist(part, b).min(dim=1).values for part in a.split(chunk)])


def chamfer(a: torch.Tensor, b: torch.Tensor, n: int = 4000, seed: int = 0) -> float:
    """Symmetric Chamfer distance between two vertex sets: the mean of the two mean
    nearest-neighbour distances, each estimated on ``n`` random query vertices against all of
    the other set (unbiased for the mean; it includes the meshes' vertex spacing)."""
    g = torch.Generator().manual_seed(seed)
    qa = a[torch.randperm(len(a), generator=g)[:n]]
    qb = b[torch.randperm(len(b), generator=g)[:n]]
    return 0.5 * float(nearest_distance(qa, b).mean() + nearest_distance(qb, a).mean())


def sphere_density(points: torch.Tensor) -> torch.Tensor:
    """25 on the sphere, rising 100 per unit inwards, 0 far outside."""
    distance = (points - CENTRE).norm(dim=-1, keepdim=True) - RADIUS
    return (THRESHOLD - 100.0 * distance).clamp(min=0.0)


def colours(points: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.5 * torch.sin(3.0 * points)


def grid_config(**overrides: Any) -> dict[str, Any]:
    return {
        "isosurface_resolution": RES,
        "pos_encoding_config": GRID,
        "mlp_network_config": MLP,
        **overrides,
    }


@pytest.fixture(scope="module")
def fitted_volume() -> tuple[ImplicitVolume, Any]:
    """An ``implicit-volume`` fitted directly to an off-centre sphere's density and a colour
    field, and its own isosurface by marching cubes at twice the conversion's resolution."""
    torch.manual_seed(0)
    volume = ImplicitVolume(
        {
            "pos_encoding_config": GRID,
            "mlp_network_config": MLP,
            "isosurface_method": "mc-cpu",
            "isosurface_resolution": 2 * RES,
        }
    )
    optimizer = torch.optim.Adam(volume.parameters(), lr=2e-2)
    for _ in range(120):
        uniform = torch.rand(2048, 3) * 2 - 1
        near = (CENTRE + 0.3 * torch.randn(2048, 3)).clamp(-1, 1)
        points = torch.cat([uniform, near])
        out = volume(points)
        loss = (out["density"] - sphere_density(points)).square().mean() / 100.0
        loss = loss + (out["features"] - colours(points)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    volume.eval()
    with torch.no_grad():
        reference = volume.isosurface()
    radius = (reference.v_pos - CENTRE).norm(dim=-1)
    assert (radius.mean() - RADIUS).abs() < 0.01 and radius.std() < 0.01  # the fit is a sphere
    return volume, reference


class AnalyticSDF(BaseImplicitGeometry):
    """A sphere's signed distance times 5 (levels beyond [-1, 1]) and a smooth deformation."""

    field_is_sdf = True

    def forward_field(self, points: torch.Tensor) -> torch.Tensor:
        return 5.0 * ((points - CENTRE).norm(dim=-1, keepdim=True) - RADIUS)

    def forward_level(self, field: torch.Tensor, threshold: float) -> torch.Tensor:
        return field - threshold

    def forward_deformation(self, points: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.sin(4.0 * points)


class NotConvertible(BaseExplicitGeometry):
    pass


# -- from an implicit volume -------------------------------------------------------------------


@pytest.mark.slow
def test_from_implicit_volume_keeps_the_surface(fitted_volume):
    volume, reference = fitted_volume
    with torch.no_grad():
        grid = TetrahedraSDFGrid.create_from(volume, grid_config())
        mesh = grid.isosurface()
    assert volume.cfg.isosurface_method == "mc-cpu"  # the source's config is restored
    distance = chamfer(mesh.v_pos, reference.v_pos)
    print(f"Chamfer to the source's isosurface: {distance / BOX_SIDE:.3%} of the box side")
    assert distance < 0.01 * BOX_SIDE
    # isosurface_bbox: the sphere's box grown by 10% of its extent per side (coarse-to-fine)
    expected = torch.stack([CENTRE - 1.2 * RADIUS, CENTRE + 1.2 * RADIUS])
    assert torch.allclose(grid.isosurface_bbox, expected, atol=0.03)
    # sdf: the source's level -(density - 25) at the grid's vertices, clamped to [-1, 1]
    with torch.no_grad():
        density = volume.forward_density(grid.grid_points())
    assert torch.allclose(grid.sdf, (THRESHOLD - density).clamp(-1, 1), atol=1e-4)
    assert grid.sdf.min() == -1.0 and grid.sdf.max() == 1.0
    assert not grid.deformation.any()  # an implicit volume has no grid deformation
    assert grid.sdf.requires_grad and grid.sdf.device == volume.bbox.device


@pytest.mark.slow
def test_inherited_texture_gives_the_source_colours(fitted_volume):
    volume, _ = fitted_volume
    with torch.no_grad():
        inherited = TetrahedraSDFGrid.create_from(volume, grid_config(), copy_net=True)
        fresh = TetrahedraSDFGrid.create_from(volume, grid_config(), copy_net=False)
        points = inherited.isosurface().v_pos
        source = volume(points)["features"]
        copied = inherited(points)["features"]
        own = fresh(points)["features"]
    assert torch.allclose(copied, source, atol=1e-6)
    assert (colours(points) - copied).abs().mean() < 0.05  # the fitted colours, not noise
    assert (own - source).abs().mean() > 0.1
    assert torch.equal(fresh.sdf, inherited.sdf)


def test_inheriting_a_mismatched_texture_is_a_config_error():
    torch.manual_seed(0)
    volume = ImplicitVolume(
        {"pos_encoding_config": GRID, "mlp_network_config": MLP, "isosurface_threshold": "auto"}
    )
    volume.set_isosurface_threshold(5.0)  # the untrained blob crosses 5, not 25
    wide = {**MLP, "n_neurons": 16}
    cases = [
        ({"mlp_network_config": wide}, "different mlp_network_config"),
        ({"pos_encoding_config": {**GRID, "per_level_scale": 1.4}}, "different pos_encoding"),
        ({"n_feature_dims": 4}, "numbers of features"),
        ({"radius": 2.0}, r"\[-radius, radius\]\^3"),
    ]
    for overrides, why in cases:
        cfg = grid_config(isosurface_resolution=8, **overrides)
        with pytest.raises(ConfigError, match=why) as error:
            TetrahedraSDFGrid.create_from(volume, cfg, copy_net=True)
        message = str(error.value)
        assert "system.geometry_convert_inherit_texture=true" in message
        assert "mlp_network_config" in message and "the source (ImplicitVolume)" in message
    # equal up to the backend and otype spelling: fine
    spelled = {**MLP, "otype": "vanillamlp", "backend": "torch"}
    same = grid_config(isosurface_resolution=8, mlp_network_config=spelled)
    grid = TetrahedraSDFGrid.create_from(volume, same, copy_net=True)
    points = torch.rand(16, 3) * 2 - 1
    assert torch.equal(grid(points)["features"], volume(points)["features"])


def test_from_volume_uses_the_source_threshold_and_a_stored_auto_value():
    torch.manual_seed(0)
    volume = ImplicitVolume(
        {"pos_encoding_config": GRID, "mlp_network_config": MLP, "isosurface_threshold": "auto"}
    )
    volume.set_isosurface_threshold(5.0)
    with torch.no_grad():
        grid = TetrahedraSDFGrid.create_from(volume, grid_config(isosurface_resolution=16))
        density = volume.forward_density(grid.grid_points())
    assert torch.allclose(grid.sdf, (5.0 - density).clamp(-1, 1), atol=1e-5)


# -- from an implicit SDF ----------------------------------------------------------------------


def test_from_implicit_sdf_keeps_levels_and_deformation():
    source = AnalyticSDF({"isosurface_deformable_grid": True, "isosurface_threshold": 0.1})
    grid = TetrahedraSDFGrid.create_from(source, grid_config(isosurface_resolution=16))
    points = grid.grid_points()
    level = source.forward_field(points) - 0.1
    assert torch.allclose(grid.sdf, level, atol=1e-5)
    assert grid.sdf.abs().max() > 1.5  # an SDF's levels are not clamped
    assert torch.allclose(grid.deformation, source.forward_deformation(points), atol=1e-6)
    # the grid's own surface is the source's marching-tetrahedra surface on the same grid
    with torch.no_grad():
        source_cfg = attrs.evolve(
            source.cfg, isosurface_resolution=16, isosurface_remove_outliers=False
        )
        source.cfg = source_cfg
        expected = source.isosurface()
        mesh = grid.isosurface()
    assert torch.allclose(mesh.v_pos, expected.v_pos, atol=1e-5)
    rigid = TetrahedraSDFGrid.create_from(
        source, grid_config(isosurface_resolution=16, isosurface_deformable_grid=False)
    )
    assert rigid.deformation is None and torch.equal(rigid.sdf, grid.sdf)


def test_copy_net_from_a_source_without_texture_networks_is_a_config_error():
    source = AnalyticSDF({})
    with pytest.raises(ConfigError, match=r"inherit_texture=true.*AnalyticSDF.*no encoding"):
        TetrahedraSDFGrid.create_from(source, grid_config(isosurface_resolution=8), copy_net=True)
    shape_only = grid_config(isosurface_resolution=8, geometry_only=True)
    assert TetrahedraSDFGrid.create_from(source, shape_only, copy_net=True).encoding is None


# -- from another grid and from anything else --------------------------------------------------


def trained_grid(**overrides: Any) -> TetrahedraSDFGrid:
    torch.manual_seed(1)
    grid = TetrahedraSDFGrid(grid_config(isosurface_resolution=8, **overrides))
    with torch.no_grad():
        grid.isosurface_bbox.copy_(torch.tensor([[-0.6, -0.5, -0.4], [0.7, 0.5, 0.3]]))
        grid.sdf.copy_(torch.randn_like(grid.sdf))
        if grid.deformation is not None:
            grid.deformation.copy_(torch.randn_like(grid.deformation))
        grid.encoding.params.copy_(torch.randn_like(grid.encoding.params))
    return grid


def test_from_grid_copies_the_state_exactly():
    source = trained_grid()
    torch.manual_seed(2)
    copy = TetrahedraSDFGrid.create_from(source, grid_config(isosurface_resolution=8))
    for name in ("isosurface_bbox", "sdf", "deformation"):
        assert torch.equal(getattr(copy, name), getattr(source, name)), name
    assert isinstance(copy.sdf, torch.nn.Parameter)
    points = torch.rand(64, 3) * 2 - 1
    assert not torch.allclose(copy(points)["features"], source(points)["features"])
    textured = TetrahedraSDFGrid.create_from(
        source, grid_config(isosurface_resolution=8), copy_net=True
    )
    assert torch.equal(textured(points)["features"], source(points)["features"])
    assert torch.equal(textured.isosurface().v_pos, source.isosurface().v_pos)
    # fixed geometry and rigid targets
    fixed = TetrahedraSDFGrid.create_from(
        source, grid_config(isosurface_resolution=8, fix_geometry=True)
    )
    assert torch.equal(fixed.sdf, source.sdf) and "sdf" in dict(fixed.named_buffers())
    rigid = TetrahedraSDFGrid.create_from(
        source, grid_config(isosurface_resolution=8, isosurface_deformable_grid=False)
    )
    assert rigid.deformation is None and torch.equal(rigid.sdf, source.sdf)
    deformable = TetrahedraSDFGrid.create_from(
        trained_grid(isosurface_deformable_grid=False), grid_config(isosurface_resolution=8)
    )
    assert not deformable.deformation.any()


def test_from_grid_needs_the_same_resolution():
    with pytest.raises(
        ConfigError, match=r"system\.geometry\.isosurface_resolution=16: .* resolution is 8"
    ):
        TetrahedraSDFGrid.create_from(trained_grid(), grid_config(isosurface_resolution=16))
    with pytest.raises(ConfigError, match=r"stage2\.geometry\.isosurface_resolution=16"):
        TetrahedraSDFGrid.create_from(
            trained_grid(),
            grid_config(isosurface_resolution=16),
            config_path="stage2.geometry",
        )


def test_from_an_unsupported_geometry_is_a_config_error():
    with pytest.raises(
        ConfigError, match="TetrahedraSDFGrid cannot be created from a NotConvertible"
    ):
        TetrahedraSDFGrid.create_from(NotConvertible(), grid_config(isosurface_resolution=8))
