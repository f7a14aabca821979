"""``TetrahedraSDFGrid.create_from(implicit_sdf)`` (Magic3D's DMTet, Fantasia3D's texture stage):
the grid keeps the SDF's surface, its signed distances unclamped and its deformation."""

from __future__ import annotations

import pytest
import torch

from studio_magic3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid
from tests.plugins.fantasia3d.geometry.surfaces import (
    BOX_SIDE,
    SPHERE_RADIUS,
    chamfer,
    make_sdf,
    sphere_points,
    surface_samples,
)

RES = 32


def grid_config(**overrides):
    return {"isosurface_resolution": RES, "geometry_only": True, **overrides}


@pytest.mark.slow
def test_fitted_sphere_converts_to_the_same_surface(fitted_sphere):
    with torch.no_grad():
        grid = TetrahedraSDFGrid.create_from(
            fitted_sphere, grid_config(isosurface_deformable_grid=False)
        )
        mesh = grid.isosurface()
        source = fitted_sphere.isosurface()
    # the very surface of the source on the same grid: same vertices
    assert mesh.n_faces == source.n_faces
    assert torch.allclose(mesh.v_pos, source.v_pos, atol=1e-5)
    # and the sphere the SDF was initialised to
    samples = surface_samples(mesh.v_pos.numpy(), mesh.t_pos_idx.numpy())
    distance = chamfer(samples, sphere_points(5000, SPHERE_RADIUS))
    print(f"Chamfer to the sphere: {distance / BOX_SIDE:.3%} of the box side")
    assert distance < 0.01 * BOX_SIDE
    # the grid's box: the sphere's box grown by 10% of its extent per side (coarse-to-fine)
    expected = torch.tensor([[-1.2 * SPHERE_RADIUS] * 3, [1.2 * SPHERE_RADIUS] * 3])
    assert torch.allclose(grid.isosurface_bbox, expected, atol=0.02)
    assert fitted_sphere.cfg.isosurface_method == "mt"  # the source's config is restored


def test_signed_distances_stay_unclamped_and_the_deformation_carries_over():
    source = make_sdf(
        sdf_bias="sphere",
        sdf_bias_params=0.3,
        isosurface_deformable_grid=True,
        isosurface_coarse_to_fine=False,  # the whole box: distances up to sqrt(3) - 0.3
        isosurface_resolution=16,
    )
    with torch.no_grad():
        grid = TetrahedraSDFGrid.create_from(source, grid_config())
        points = grid.grid_points()
        sdf = source.forward_sdf(points)
        deformation = source.forward_deformation(points)
        mesh = grid.isosurface()
    assert torch.equal(grid.isosurface_bbox, source.bbox)
    assert grid.sdf.max() > 1.0  # a density would have been clamped to [-1, 1]
    assert torch.allclose(grid.sdf, sdf, atol=1e-6)
    assert torch.allclose(grid.deformation, deformation, atol=1e-6)
    assert mesh.n_faces > 0
    assert (mesh.v_pos.norm(dim=-1) - 0.3).abs().max() < 2.0 / RES  # within a cell
