"""Marching cubes and marching tetrahedra on analytic fields; extract_isosurface's pipeline."""

from __future__ import annotations

import math

import pytest
import torch

from studio.errors import ConfigError, StudioError
from studio.mesh import MarchingCubesHelper, MarchingTetrahedraHelper, extract_isosurface
from studio.mesh.isosurface import (
    TET_EDGES,
    build_triangle_table,
    get_helper,
    mean_field_threshold,
)
from tests.core.mesh.analytic import (
    SPHERE_RADIUS,
    TORUS_R,
    TORUS_r,
    chamfer,
    mesh_samples,
    sphere_outward,
    sphere_samples,
    sphere_sdf,
    torus_outward,
    torus_samples,
    torus_sdf,
)

BBOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
DIAGONAL = float((BBOX[1] - BBOX[0]).norm())


def sdf_level(field: torch.Tensor, threshold: float) -> torch.Tensor:
    return field - threshold


def density_level(field: torch.Tensor, threshold: float) -> torch.Tensor:
    return -(field - threshold)


SHAPES = {
    "sphere": (sphere_sdf, sphere_samples, sphere_outward, 4 / 3 * math.pi * SPHERE_RADIUS**3),
    "torus": (torus_sdf, torus_samples, torus_outward, 2 * math.pi**2 * TORUS_R * TORUS_r**2),
}


def test_triangle_table():
    table, counts = build_triangle_table()
    for case in range(16):
        outside = [case >> i & 1 for i in range(4)]
        n_out = sum(outside)
        assert counts[case] == {0: 0, 1: 1, 2: 2, 3: 1, 4: 0}[n_out]
        crossing = {e for e, (a, b) in enumerate(TET_EDGES) if outside[a] != outside[b]}
        used = {int(e) for e in table[case, : counts[case]].reshape(-1)}
        assert used == crossing  # every crossing edge is used, nothing else
        assert (table[case, counts[case] :] == -1).all()


@pytest.mark.parametrize("method", ["mc-cpu", "mt"])
@pytest.mark.parametrize("shape", ["sphere", "torus"])
def test_analytic_surfaces(method, shape):
    sdf, true_samples, outward, volume = SHAPES[shape]
    mesh = extract_isosurface(
        sdf,
        BBOX,
        method=method,
        resolution=64,
        threshold=0.0,
        level_fn=sdf_level,
        coarse_to_fine=False,
    )
    samples = mesh_samples(mesh, 10_000)
    distance = chamfer(samples.float(), true_samples(10_000).float())
    # symmetric Chamfer of 10k-point sample sets: two samplings of the true surface alone are
    # ~0.26% of the diagonal apart, so this bounds gross errors (holes, offsets, stray sheets)
    assert distance < 0.01 * DIAGONAL
    # the exact distance from the mesh to the surface is far below a grid cell (2/63)
    assert sdf(samples).abs().mean() < 0.001
    assert sdf(mesh.v_pos.double()).abs().max() < 0.003
    tm = mesh.to_trimesh()
    assert tm.is_watertight and tm.is_winding_consistent
    assert tm.volume == pytest.approx(volume, rel=0.01)  # positive volume: outward winding
    # every face of non-zero area faces away from the centre (circle) of the shape
    normals = torch.from_numpy(tm.face_normals.copy())
    centres = torch.from_numpy(tm.triangles_center.copy())
    area = torch.from_numpy(tm.area_faces.copy())
    facing = (normals * outward(centres)).sum(-1)
    assert (facing[area > 1e-12] > 0).all()
    # vertex normals too, for vertices that touch a face of non-zero area
    touching = torch.zeros(mesh.n_vertices, dtype=torch.bool)
    touching[mesh.t_pos_idx[area > 1e-12].reshape(-1)] = True
    v_out = torch.nn.functional.normalize(outward(mesh.v_pos.double()), dim=-1)
    assert (mesh.v_nrm.double() * v_out).sum(-1)[touching].min() > 0.5


@pytest.mark.parametrize("helper", [MarchingCubesHelper(9), MarchingTetrahedraHelper(8)])
def test_linear_field_gives_the_exact_plane(helper):
    """Linear interpolation reproduces the zero set of a linear field exactly."""
    grid = helper.grid_vertices.double()
    normal = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    level = (grid - 0.45) @ normal
    mesh = helper(level.reshape(-1, 1))
    assert mesh.n_faces > 0
    assert ((mesh.v_pos - 0.45) @ normal).abs().max() < 1e-12
    tri = mesh.v_pos[mesh.t_pos_idx]
    face_normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    big = face_normals.norm(dim=-1) > 1e-9
    assert ((face_normals[big] @ normal) > 0).all()  # towards positive level (outside)


def _small_level(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    level = torch.rand(27, 1, generator=g, dtype=torch.float64) * 0.8 + 0.2
    sign = torch.where(torch.rand(27, 1, generator=g) < 0.5, -1.0, 1.0).double()
    return level * sign


def test_marching_tetrahedra_gradients():
    helper = MarchingTetrahedraHelper(2)  # 27 vertices, 48 tets
    level = _small_level().requires_grad_(True)
    mesh = helper(level)
    assert mesh.n_faces > 10 and mesh.requires_grad
    assert torch.autograd.gradcheck(lambda x: helper(x).v_pos, (level,))
    g = torch.Generator().manual_seed(1)
    deformation = torch.randn(27, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    fixed = level.detach()
    assert torch.autograd.gradcheck(lambda d: helper(fixed, d).v_pos, (deformation,))


def test_marching_tetrahedra_deformation_and_extras():
    helper = MarchingTetrahedraHelper(4)
    level = sphere_sdf(helper.grid_vertices.double(), 0.3, (0.5, 0.5, 0.5))
    plain = helper(level)
    assert plain.extras["grid_deformation"] is None
    assert plain.extras["grid_level"] is level
    assert torch.equal(plain.extras["tet_edges"], helper.tet_edges)
    zero = helper(level, torch.zeros(125, 3, dtype=torch.float64))
    assert torch.allclose(zero.v_pos, plain.v_pos)
    shift = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    moved = helper(level, shift.expand(125, 3))
    # a uniform deformation translates the grid, and the mesh with it, by tanh(d) / resolution
    assert torch.allclose(moved.v_pos, plain.v_pos + torch.tanh(shift) / 4)
    assert torch.allclose(
        moved.extras["grid_vertices"], helper.grid_vertices + torch.tanh(shift) / 4
    )
    with pytest.raises(ValueError, match="level must have shape"):
        helper(level[:-1])


def test_marching_cubes_rejects_deformation():
    helper = MarchingCubesHelper(4)
    with pytest.raises(ConfigError, match="isosurface_deformable_grid"):
        helper(torch.zeros(64, 1), torch.zeros(64, 3))


def _offset_sphere(points: torch.Tensor) -> torch.Tensor:
    return sphere_sdf(points, 0.2, (0.3, -0.1, 0.2))


@pytest.mark.parametrize("method", ["mc-cpu", "mt"])
def test_coarse_to_fine_box(method):
    kwargs = dict(method=method, resolution=32, threshold=0.0, level_fn=sdf_level)
    coarse = extract_isosurface(_offset_sphere, BBOX, coarse_to_fine=False, **kwargs)
    fine = extract_isosurface(_offset_sphere, BBOX, coarse_to_fine=True, **kwargs)
    lo, hi = coarse.v_pos.amin(0), coarse.v_pos.amax(0)
    expected = torch.stack([lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)])
    box = fine.extras["bbox"]
    assert torch.allclose(box, expected)
    assert torch.equal(coarse.extras["bbox"], BBOX)
    centre = torch.tensor([0.3, -0.1, 0.2])
    assert (box[0] < centre - 0.2).all() and (box[1] > centre + 0.2).all()  # contains the sphere
    # 1.2 x the sphere's extent (0.4) up to a coarse cell: much smaller than the full box
    assert torch.allclose(box[1] - box[0], torch.full((3,), 0.48), atol=2 / 31)
    # the finer grid in the tight box is more accurate
    coarse_error = _offset_sphere(coarse.v_pos.double()).abs().mean()
    fine_error = _offset_sphere(fine.v_pos.double()).abs().mean()
    assert fine_error < 0.25 * coarse_error


def test_coarse_to_fine_box_is_clamped_to_the_bbox():
    def touching(points):
        return sphere_sdf(points, 0.5, (0.6, 0.0, 0.0))  # pokes out through x = 1

    mesh = extract_isosurface(
        touching, BBOX, method="mt", resolution=16, threshold=0.0, level_fn=sdf_level
    )
    assert mesh.extras["bbox"][1, 0] == 1.0
    assert mesh.extras["bbox"][0, 0] > 0.0


@pytest.mark.parametrize("method", ["mc-cpu", "mt"])
def test_chunked_evaluation_gives_the_same_mesh(method):
    calls = []

    def field(points):
        calls.append(len(points))
        return torus_sdf(points)

    kwargs = dict(method=method, resolution=24, threshold=0.0, level_fn=sdf_level)
    whole = extract_isosurface(field, BBOX, **kwargs)
    assert calls == [24**3 if method == "mc-cpu" else 25**3] * 2
    calls.clear()
    chunked = extract_isosurface(field, BBOX, chunk=1000, **kwargs)
    assert max(calls) == 1000 and len(calls) > 2
    assert torch.equal(whole.v_pos, chunked.v_pos)
    assert torch.equal(whole.t_pos_idx, chunked.t_pos_idx)


@pytest.mark.parametrize("method", ["mc-cpu", "mt"])
def test_empty_field_raises_a_clear_error(method):
    def blob(points):  # a density whose maximum (10) is below the threshold
        return 10.0 * torch.exp(-(points**2).sum(-1, keepdim=True))

    with pytest.raises(StudioError) as info:
        extract_isosurface(
            blob, BBOX, method=method, resolution=16, threshold=25.0, level_fn=density_level
        )
    message = str(info.value)
    assert "threshold 25 is empty" in message
    values = blob(BBOX[0] + get_helper(method, 16).grid_vertices * (BBOX[1] - BBOX[0]))
    assert f"ranges from {values.min():g} to {values.max():g}" in message
    assert values.min() == pytest.approx(10 * math.exp(-3))  # the box corners
    assert "isosurface_threshold" in message and "'auto'" in message


def _two_spheres(points):
    return torch.minimum(sphere_sdf(points, 0.5), sphere_sdf(points, 0.12, (0.75, 0.75, 0.75)))


def test_outlier_components_are_removed():
    kwargs = dict(method="mt", resolution=32, threshold=0.0, level_fn=sdf_level)
    kept = extract_isosurface(_two_spheres, BBOX, remove_outliers=False, **kwargs)
    cleaned = extract_isosurface(_two_spheres, BBOX, outlier_threshold=0.1, **kwargs)
    assert len(kept.to_trimesh().split(only_watertight=False)) == 2
    assert len(cleaned.to_trimesh().split(only_watertight=False)) == 1
    assert sphere_sdf(cleaned.v_pos.double(), 0.5).abs().max() < 0.01  # the big sphere stayed
    assert kept.n_faces > cleaned.n_faces > 0.9 * kept.n_faces
    assert "bbox" in cleaned.extras


def test_outliers_are_kept_while_the_mesh_needs_gradients():
    scale = torch.tensor(1.0, requires_grad=True)
    mesh = extract_isosurface(
        lambda p: _two_spheres(p) * scale,
        BBOX,
        method="mt",
        resolution=32,
        threshold=0.0,
        level_fn=sdf_level,
        outlier_threshold=0.1,
    )
    assert mesh.requires_grad
    assert len(mesh.to_trimesh().split(only_watertight=False)) == 2


def test_auto_threshold():
    values = torch.tensor([[0.0], [1e-6], [1.0], [3.0]])
    assert mean_field_threshold(values) == 2.0
    assert mean_field_threshold(torch.zeros(5, 1)) == 0.0

    def density(points):
        return torch.relu(1.0 - points.norm(dim=-1, keepdim=True))

    mesh = extract_isosurface(
        density, BBOX, method="mt", resolution=16, threshold="auto", level_fn=density_level
    )
    grid = BBOX[0] + get_helper("mt", 16).grid_vertices * (BBOX[1] - BBOX[0])
    expected = mean_field_threshold(density(grid))  # from the first (full-box) pass
    assert mesh.extras["threshold"] == pytest.approx(expected)
    assert (1.0 - mesh.v_pos.norm(dim=-1)).mean().item() == pytest.approx(expected, abs=0.01)


def test_helper_cache_and_method_errors():
    assert get_helper("mt", 8) is get_helper("mt", 8)
    assert isinstance(get_helper("mc-cpu", 8), MarchingCubesHelper)
    with pytest.raises(ConfigError, match="Unknown isosurface method 'mc'"):
        get_helper("mc", 8)
    with pytest.raises(ConfigError, match="needs isosurface_method='mt'"):
        extract_isosurface(
            sphere_sdf,
            BBOX,
            method="mc-cpu",
            resolution=8,
            threshold=0.0,
            level_fn=sdf_level,
            deformation_fn=lambda p: torch.zeros_like(p),
        )
