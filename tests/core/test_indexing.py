"""studio.indexing: row gathers equal to advanced indexing, with gradients that repeat exactly."""

from __future__ import annotations

import torch

from studio.api import get_isosurface_helper
from studio.indexing import take_batched_rows, take_rows


def test_take_rows_is_advanced_indexing() -> None:
    source = torch.randn(50, 3, 2)
    index = torch.randint(0, 50, (7, 4))
    assert torch.equal(take_rows(source, index), source[index])
    batched = torch.randn(3, 50, 4)
    image = torch.randint(0, 3, (9,))[:, None]
    rows = torch.randint(0, 50, (9, 3))
    assert torch.equal(take_batched_rows(batched, image, rows), batched[image, rows])


def test_gradients_of_a_meshs_shared_vertices_are_the_same_every_time() -> None:
    """The pattern that broke bit-identical resumes: the first corner of every face of a marching
    tetrahedra sphere (advanced indexing's backward gave a different sum on each of 5 repeats)."""
    helper = get_isosurface_helper("mt", 64)
    mesh = helper((helper.grid_vertices - 0.5).norm(dim=-1) - 0.3)
    corner = mesh.t_pos_idx[:, 0]
    weights = torch.randn(corner.shape[0], 3, generator=torch.Generator().manual_seed(0))
    vertices = mesh.v_pos.detach().clone().requires_grad_(True)
    grads = []
    for _ in range(6):
        (take_rows(vertices, corner) * weights).sum().backward()
        grads.append(vertices.grad.clone())
        vertices.grad = None
    assert all(torch.equal(grads[0], g) for g in grads[1:])
    expected = torch.zeros(vertices.shape, dtype=torch.float64)
    expected.index_add_(0, corner, weights.double())
    torch.testing.assert_close(grads[0].double(), expected, rtol=1e-5, atol=1e-5)
