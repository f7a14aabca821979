"""Mesh UVs and tangents: ``has_uv`` / ``set_uv``, ``v_tng`` along increasing U, ``v_tng_sign``
(+1 when ``n x t`` points towards the top of the texture image, i.e. along ``1 - v``)."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from studio.errors import StudioError
from studio.mesh import Mesh
from tests.core.mesh.test_mesh import flat_grid


def grid_with_uv(u_of_xy, v_of_xy, n: int = 6) -> Mesh:
    """The flat ``n x n`` grid (z = 0, normals +z) with per-vertex UVs ``u(x, y)``, ``v(x, y)``."""
    mesh = flat_grid(n)
    x, y = mesh.v_pos[:, 0] / (n - 1), mesh.v_pos[:, 1] / (n - 1)
    mesh.set_uv(torch.stack([u_of_xy(x, y), v_of_xy(x, y)], -1).float(), mesh.t_pos_idx)
    return mesh


def sphere_with_uv(mirror: bool = False, subdivisions: int = 3) -> tuple[Mesh, torch.Tensor]:
    """An icosphere with a per-corner longitude / latitude UV map: ``u = phi / 2pi`` (``-phi`` when
    mirrored; faces across the date line unwrapped), ``v = theta / pi`` (``v = 0`` at the north
    pole, so the image's top is north). Returns ``(mesh, east [V, 3])``."""
    tm = trimesh.creation.icosphere(subdivisions=subdivisions)
    mesh = Mesh.from_trimesh(tm)
    v = mesh.v_pos.double()
    corners = v[mesh.t_pos_idx]  # [F, 3, 3]
    phi = torch.atan2(corners[..., 1], corners[..., 0])  # (-pi, pi]
    wraps = (phi.amax(-1) - phi.amin(-1)) > math.pi
    phi = torch.where(wraps[:, None] & (phi < 0), phi + 2 * math.pi, phi)
    theta = torch.acos(corners[..., 2].clamp(-1, 1))
    u = (-phi if mirror else phi) / (2 * math.pi)
    uv = torch.stack([u, theta / math.pi], -1).reshape(-1, 2)
    mesh.set_uv(uv.float(), torch.arange(3 * mesh.n_faces).reshape(-1, 3))
    east = torch.stack([-v[:, 1], v[:, 0], torch.zeros_like(v[:, 0])], -1)
    return mesh, (east / east.norm(dim=-1, keepdim=True)).float()


def assert_unit_and_perpendicular(mesh: Mesh) -> None:
    t, n = mesh.v_tng, mesh.v_nrm
    assert torch.allclose(t.norm(dim=-1), torch.ones_like(t[:, 0]), atol=1e-5)
    assert (t * n).sum(-1).abs().max() < 1e-5
    assert set(mesh.v_tng_sign.flatten().tolist()) <= {-1.0, 1.0}
    assert mesh.v_tng_sign.shape == (mesh.n_vertices, 1)


def test_has_uv_set_uv_and_unwrap():
    mesh = flat_grid(3)
    assert not mesh.has_uv
    with pytest.raises(StudioError, match=r"unwrap_uv\(\).*set_uv"):
        _ = mesh.v_tng
    assert not mesh.has_uv  # asking for tangents never unwraps
    _ = mesh.v_tex  # the lazy UVs do (xatlas)
    assert mesh.has_uv
    assert mesh.v_tng.shape == (9, 3)
    with pytest.raises(ValueError, match="one UV index per face corner"):
        mesh.set_uv(torch.zeros(9, 2), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must index 0\.\.8"):
        mesh.set_uv(torch.zeros(9, 2), torch.full_like(mesh.t_pos_idx, 9))
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        mesh.set_uv(torch.zeros(9, 3), mesh.t_pos_idx)


@pytest.mark.parametrize(
    ("u", "v", "tangent", "sign"),
    [
        (lambda x, y: x, lambda x, y: 1 - y, (1.0, 0.0, 0.0), 1.0),  # image top = +y: n x t = +y
        (lambda x, y: 1 - x, lambda x, y: 1 - y, (-1.0, 0.0, 0.0), -1.0),  # mirrored in u
        (lambda x, y: x, lambda x, y: y, (1.0, 0.0, 0.0), -1.0),  # mirrored in v
        (lambda x, y: y, lambda x, y: x, (0.0, 1.0, 0.0), 1.0),  # rotated: u along +y, top -x
        (
            lambda x, y: 0.3 * (x + y),
            lambda x, y: 0.3 * (x - y) + 0.5,
            (0.5**0.5, 0.5**0.5, 0),
            1.0,
        ),
    ],
    ids=["plain", "mirror-u", "mirror-v", "rotated", "diagonal"],
)
def test_flat_grid_tangent_is_the_u_direction(u, v, tangent, sign):
    mesh = grid_with_uv(u, v)
    expected = torch.tensor(tangent, dtype=mesh.v_pos.dtype).expand_as(mesh.v_pos)
    assert torch.allclose(mesh.v_tng, expected, atol=1e-6)
    assert torch.all(mesh.v_tng_sign == sign)
    assert_unit_and_perpendicular(mesh)


def test_seam_between_mirrored_halves():
    """u = x left of x = 0.5 and u = 1 - x right of it: the right half is mirrored (-1); on the
    seam the two directions cancel and the fallback is still a unit vector perpendicular to n."""
    mesh = grid_with_uv(lambda x, y: torch.where(x <= 0.5, x, 1 - x), lambda x, y: 1 - y, n=7)
    x = mesh.v_pos[:, 0] / 6
    left, right = x < 0.49, x > 0.51
    assert torch.all(mesh.v_tng_sign[left] == 1) and torch.all(mesh.v_tng_sign[right] == -1)
    assert torch.allclose(mesh.v_tng[left, 0], torch.ones(()).double())
    assert torch.allclose(mesh.v_tng[right, 0], -torch.ones(()).double())
    assert_unit_and_perpendicular(mesh)


def test_degenerate_uv_triangles_are_skipped():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 2]])
    uv = torch.tensor(
        [[0.0, 1], [0.5, 1], [0.5, 0.5], [0, 0.5], [0.7, 0.2], [0.7, 0.2], [0.7, 0.2]]
    )
    mesh = Mesh(v, faces)
    mesh.set_uv(uv, torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]]))  # 3rd: all UVs equal
    assert torch.allclose(mesh.v_tng[:4], torch.tensor([1.0, 0, 0]).double())
    # vertex 4 is only in the degenerate face: some unit vector perpendicular to its normal
    assert_unit_and_perpendicular(mesh)


@pytest.mark.parametrize("mirror", [False, True], ids=["plain", "mirrored"])
def test_sphere_tangents_follow_increasing_u(mirror):
    mesh, east = sphere_with_uv(mirror)
    assert_unit_and_perpendicular(mesh)
    mid = mesh.v_pos[:, 2].abs() < 0.7  # away from the poles, where u is ill-defined
    along = (mesh.v_tng * east).sum(-1)[mid]
    expected = -1.0 if mirror else 1.0  # increasing u: east, or west when mirrored
    assert (along * expected).min() > 0.98
    # n x east = north = towards v = 0 (the image's top): +1; mirrored (t west): -1
    assert torch.all(mesh.v_tng_sign[mid] == expected)


def test_tangents_are_differentiable_and_follow_the_mesh():
    base = flat_grid(4)
    v = base.v_pos + 0.1 * torch.randn(
        base.v_pos.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    uv = (base.v_pos[:, :2] / 3).float()

    def tangents(x):
        mesh = Mesh(x, base.t_pos_idx)
        mesh.set_uv(uv, base.t_pos_idx)
        return mesh.v_tng

    v.requires_grad_(True)
    assert torch.autograd.gradcheck(tangents, (v,))


def test_device_copy_keeps_uvs_and_tangents():
    mesh = grid_with_uv(lambda x, y: x, lambda x, y: 1 - y)
    t = mesh.v_tng
    copy = mesh.to("cpu")
    assert copy.has_uv and torch.equal(copy._v_tng, t)
    assert torch.equal(copy.v_tng_sign, mesh.v_tng_sign)
