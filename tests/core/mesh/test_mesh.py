"""Mesh: normals, edges, regularisers, outlier removal, UVs and conversions."""

from __future__ import annotations

import pytest
import torch
import trimesh

from studio.errors import ConfigError
from studio.mesh import Mesh
from studio.mesh.mesh import uniform_laplacian


def flat_grid(n: int = 6, dtype=torch.float64) -> Mesh:
    """``n x n`` vertices on z = 0, every square split along the same diagonal, facing +z."""
    ij = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1)
    v = torch.cat([ij.reshape(-1, 2).to(dtype), torch.zeros(n * n, 1, dtype=dtype)], dim=-1)
    a = (ij[:-1, :-1, 0] * n + ij[:-1, :-1, 1]).reshape(-1)
    b, c, d = a + n, a + n + 1, a + 1  # (i+1, j), (i+1, j+1), (i, j+1)
    faces = torch.cat([torch.stack([a, b, c], -1), torch.stack([a, c, d], -1)])
    return Mesh(v, faces)


def tetrahedron(dtype=torch.float64) -> Mesh:
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=dtype)
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return Mesh(v, f)


def icosphere(subdivisions: int = 2, offset=(0.0, 0.0, 0.0), radius: float = 1.0) -> Mesh:
    tm = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    tm.apply_translation(offset)
    return Mesh.from_trimesh(tm)


def test_flat_grid_normals_point_up():
    mesh = flat_grid()
    assert torch.allclose(mesh.v_nrm, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_vertex_normals_are_area_weighted():
    # two faces share vertex 0: a big one in the xy plane and a small one in the xz plane
    v = torch.tensor([[0.0, 0, 0], [4, 0, 0], [0, 4, 0], [0, 0, 1]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 3, 1]])
    n0 = Mesh(v, f).v_nrm[0]
    big = torch.tensor([0.0, 0, 16])  # cross products: 2 * area * unit normal
    small = torch.tensor([0.0, 4, 0])
    expected = (big + small) / (big + small).norm()
    assert torch.allclose(n0, expected.double())


def test_normals_of_a_closed_convex_mesh_point_outward_and_fallback():
    mesh = icosphere(2)
    radial = mesh.v_pos / mesh.v_pos.norm(dim=-1, keepdim=True)
    assert (mesh.v_nrm * radial).sum(-1).min() > 0.99
    # an unused vertex has no normal: (0, 0, 1)
    v = torch.cat([tetrahedron().v_pos, torch.tensor([[5.0, 5, 5]], dtype=torch.float64)])
    assert torch.equal(
        Mesh(v, tetrahedron().t_pos_idx).v_nrm[4], torch.tensor([0.0, 0, 1]).double()
    )


def test_normals_are_differentiable():
    base = icosphere(0).v_pos.double()
    faces = icosphere(0).t_pos_idx
    v = base + 0.05 * torch.randn(
        base.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: Mesh(x, faces).v_nrm, (v,))


def test_edges():
    assert Mesh(tetrahedron().v_pos, tetrahedron().t_pos_idx).edges.tolist() == [
        [0, 1],
        [0, 2],
        [0, 3],
        [1, 2],
        [1, 3],
        [2, 3],
    ]
    n = 6
    edges = flat_grid(n).edges
    assert len(edges) == 2 * n * (n - 1) + (n - 1) ** 2  # rows, columns, one diagonal per square
    assert (edges[:, 0] < edges[:, 1]).all()
    assert len(torch.unique(edges, dim=0)) == len(edges)


def test_normal_consistency_flat_sphere_crumpled():
    flat = flat_grid(8)
    assert flat.normal_consistency().item() == pytest.approx(0.0, abs=1e-12)
    sphere = icosphere(3)
    # vertex normals of a sphere are radial: the term is 1 - cos(angle between the endpoints)
    unit = sphere.v_pos / sphere.v_pos.norm(dim=-1, keepdim=True)
    a, b = sphere.edges.t()
    radial = (1.0 - (unit[a] * unit[b]).sum(-1)).mean().item()
    assert sphere.normal_consistency().item() == pytest.approx(radial, rel=0.05)
    finer = icosphere(4).normal_consistency().item()
    assert finer == pytest.approx(sphere.normal_consistency().item() / 4, rel=0.1)
    g = torch.Generator().manual_seed(0)
    crumpled_v = flat.v_pos.clone()
    crumpled_v[:, 2] = 0.5 * torch.randn(len(crumpled_v), generator=g, dtype=torch.float64)
    crumpled = Mesh(crumpled_v, flat.t_pos_idx).normal_consistency().item()
    assert crumpled > 10 * sphere.normal_consistency().item()


def test_uniform_laplacian_matrix():
    mesh = tetrahedron()
    dense = uniform_laplacian(mesh.edges, 4).to_dense()
    expected = 4 * torch.eye(4) - torch.ones(4, 4)  # every vertex neighbours the other three
    assert torch.equal(dense, expected)


def test_laplacian_loss_values_and_gradient():
    mesh = tetrahedron()
    v = mesh.v_pos.clone().requires_grad_(True)
    mesh = Mesh(v, mesh.t_pos_idx)
    loss = mesh.laplacian()
    # L v = 3 v_i - sum of the others = 4 (v_i - centroid)
    expected = (4 * (v - v.mean(dim=0))).norm(dim=-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    loss.backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert not mesh.laplacian_matrix().requires_grad


def test_laplacian_is_zero_in_a_regular_flat_grid_interior():
    n = 7
    mesh = flat_grid(n)
    lv = torch.sparse.mm(mesh.laplacian_matrix(), mesh.v_pos).norm(dim=-1).reshape(n, n)
    assert lv[1:-1, 1:-1].abs().max() == 0.0
    assert (lv[0] > 0).all() and (lv[-1] > 0).all()
    assert mesh.laplacian() > 0


def _concat(*meshes: Mesh) -> Mesh:
    v, f, offset = [], [], 0
    for m in meshes:
        v.append(m.v_pos)
        f.append(m.t_pos_idx + offset)
        offset += m.n_vertices
    return Mesh(torch.cat(v), torch.cat(f), bbox="kept")


def test_remove_outlier_fraction_and_count():
    big = icosphere(3)  # 1280 faces
    small = tetrahedron(torch.float32)  # 4 faces
    small = Mesh(small.v_pos * 0.1 + 3.0, small.t_pos_idx)
    both = _concat(big, small)
    cleaned = both.remove_outlier(0.01)  # 1% of 1280 = 12.8 faces
    assert cleaned.n_faces == big.n_faces and cleaned.n_vertices == big.n_vertices
    assert torch.equal(cleaned.v_pos, big.v_pos) and torch.equal(cleaned.t_pos_idx, big.t_pos_idx)
    assert cleaned.extras["bbox"] == "kept"
    assert both.remove_outlier(5).n_faces == big.n_faces  # absolute count
    assert both.remove_outlier(4) is both  # nothing below 4 faces
    assert both.remove_outlier(10_000) is both  # would remove everything


def test_remove_outlier_keeps_vertex_colours():
    big, small = icosphere(1), tetrahedron(torch.float32)
    both = _concat(Mesh(small.v_pos + 5.0, small.t_pos_idx), big)
    colours = torch.rand(both.n_vertices, 3)
    both.set_vertex_color(colours)
    cleaned = both.remove_outlier(0.5)
    assert torch.equal(cleaned.v_rgb, colours[4:])
    assert torch.equal(cleaned.v_pos, big.v_pos)


def test_unwrap_uv():
    mesh = icosphere(2)
    v_tex, t_tex_idx = mesh.v_tex, mesh.t_tex_idx
    assert v_tex.shape[1] == 2 and v_tex.dtype == torch.float32
    assert t_tex_idx.shape == mesh.t_pos_idx.shape and t_tex_idx.dtype == torch.long
    assert len(v_tex) >= mesh.n_vertices  # seams duplicate vertices
    assert v_tex.min() >= 0.0 and v_tex.max() <= 1.0
    tri = v_tex[t_tex_idx]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    uv_area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs()
    assert (uv_area > 0).all() and 0.3 < uv_area.sum() <= 1.0  # charts packed without overlap
    # options by attribute name
    v_tex2, _ = mesh.unwrap_uv({"max_iterations": 2}, {"padding": 4, "resolution": 256})
    assert mesh.v_tex is v_tex2


def test_unwrap_uv_option_errors():
    mesh = icosphere(0)
    with pytest.raises(ConfigError, match="Unknown xatlas chart option 'max_iteration'"):
        mesh.unwrap_uv({"max_iteration": 2})
    with pytest.raises(ConfigError, match="pack option 'padding' cannot be set"):
        mesh.unwrap_uv(pack_options={"padding": "wide"})


def test_trimesh_round_trip_and_device_copy():
    mesh = icosphere(1)
    mesh.set_vertex_color(torch.rand(mesh.n_vertices, 3))
    tm = mesh.to_trimesh()
    assert tm.is_watertight and len(tm.faces) == mesh.n_faces
    assert (tm.visual.vertex_colors[:, :3] == (mesh.v_rgb * 255).round().byte().numpy()).all()
    back = Mesh.from_trimesh(tm)
    assert torch.equal(back.v_pos, mesh.v_pos) and torch.equal(back.t_pos_idx, mesh.t_pos_idx)
    moved = mesh.to("cpu")
    assert moved is not mesh and torch.equal(moved.v_pos, mesh.v_pos)
    assert not mesh.requires_grad
    assert Mesh(mesh.v_pos.clone().requires_grad_(True), mesh.t_pos_idx).requires_grad
