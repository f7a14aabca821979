"""The generated Kuhn tetrahedral grid: sizes, orientation, volume, conformity, edges."""

from __future__ import annotations

import pytest
import torch

from studio.mesh.tets import lattice_vertices, tet_grid, tet_grid_edges


@pytest.mark.parametrize("res", [1, 2, 5])
def test_sizes_and_range(res):
    vertices, tets = tet_grid(res)
    assert vertices.shape == ((res + 1) ** 3, 3) and vertices.dtype == torch.float32
    assert tets.shape == (6 * res**3, 4) and tets.dtype == torch.long
    assert vertices.min() == 0.0 and vertices.max() == 1.0
    assert tets.min() == 0 and tets.max() == len(vertices) - 1
    # the lattice spacing is 1 / res on every axis
    steps = torch.unique(vertices[:, 0])
    assert torch.allclose(steps[1:] - steps[:-1], torch.full((res,), 1.0 / res))


def test_vertex_order_is_meshgrid_ij():
    v = lattice_vertices(3)
    n = 4
    i, j, k = 1, 2, 3
    assert torch.allclose(v[(i * n + j) * n + k], torch.tensor([i, j, k]) / 3.0)


@pytest.mark.parametrize("res", [1, 3])
def test_tets_positively_oriented_and_fill_the_cube(res):
    vertices, tets = tet_grid(res)
    p = vertices.double()[tets]
    volumes = torch.linalg.det(p[:, 1:] - p[:, :1]) / 6.0
    assert torch.allclose(volumes, torch.full_like(volumes, 1.0 / (6 * res**3)))
    assert volumes.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_grid_is_conforming():
    """Each triangle is shared by two tetrahedra, except the 12 res^2 triangles on the cube's skin."""
    res = 3
    vertices, tets = tet_grid(res)
    faces = torch.cat(
        [tets[:, [1, 2, 3]], tets[:, [0, 2, 3]], tets[:, [0, 1, 3]], tets[:, [0, 1, 2]]]
    )
    unique, counts = torch.unique(faces.sort(dim=1).values, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    boundary = unique[counts == 1]
    assert len(boundary) == 12 * res**2
    corners = vertices[boundary]  # [B, 3, 3]: every boundary triangle lies in one cube face
    on_face = ((corners == 0) | (corners == 1)).all(dim=1).any(dim=-1)
    assert on_face.all()


@pytest.mark.parametrize("res", [1, 4])
def test_edges_are_the_unique_tet_edges(res):
    _, tets = tet_grid(res)
    pairs = tets[:, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]].reshape(-1, 2)
    expected = torch.unique(pairs.sort(dim=1).values, dim=0)
    edges = tet_grid_edges(res)
    assert (edges[:, 0] < edges[:, 1]).all()
    assert len(edges) == len(expected)
    assert torch.equal(torch.unique(edges, dim=0), expected)


def test_grid_is_cached_and_resolution_checked():
    assert tet_grid(2)[1] is tet_grid(2)[1]
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="positive integer"):
            tet_grid(bad)
