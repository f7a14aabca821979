"""The PyTorch rasterizer against an independent float64 ray caster (Moller-Trumbore)."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from studio.errors import ConfigError, StudioError
from studio.rasterize import make_rasterizer, triangle_ids
from studio.rasterize.torch_backend import TorchRasterizer, orderable_depth
from tests.core.rasterize.reference import iou, make_cameras, ray_cast, to_clip

SIZE = 64


def icosphere(subdivisions: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces)


def cube() -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.box(extents=(1.2, 1.0, 0.8))
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces)


def overlapping_triangles() -> tuple[torch.Tensor, torch.Tensor]:
    """Two crossing triangles, one nearer the +x camera than the other, overlapping on screen."""
    vertices = torch.tensor(
        [
            [0.3, -0.8, -0.6],
            [0.3, 0.8, -0.6],
            [0.3, 0.0, 0.8],
            [-0.3, -0.9, 0.6],
            [-0.3, 0.9, 0.6],
            [-0.3, 0.1, -0.9],
        ]
    )
    return vertices, torch.tensor([[0, 1, 2], [3, 4, 5]])


CAMERAS = torch.tensor([[3.0, 0.0, 0.0], [2.1, 1.7, 1.2], [-1.0, -2.5, 1.6], [0.4, 0.3, -2.9]])
MESHES = {"sphere": icosphere, "cube": cube, "two-triangles": overlapping_triangles}


@pytest.mark.parametrize("name", sorted(MESHES))
def test_matches_ray_casting(name: str) -> None:
    """Coverage IoU, per-pixel triangle ids, depth and barycentrics agree with ray casting."""
    vertices, faces = MESHES[name]()
    mvp = make_cameras(CAMERAS)
    clip = to_clip(vertices, mvp.float())
    rast = TorchRasterizer().rasterize(clip, faces, (SIZE, SIZE))
    assert rast.shape == (len(CAMERAS), SIZE, SIZE, 4)
    ids = triangle_ids(rast)
    for b in range(len(CAMERAS)):
        ref = ray_cast(vertices, faces, mvp[b], SIZE, SIZE)
        covered, ref_covered = ids[b] >= 0, ref.face >= 0
        assert ref_covered.sum() > 50
        assert iou(covered, ref_covered) > 0.99
        both = covered & ref_covered
        same = both & (ids[b] == ref.face)
        assert same.sum() / both.sum() > 0.99
        # where the ids differ the ray passes within a hair of an edge (a legitimate tie)
        assert (ref.bary[both & ~same].min(dim=-1).values < 1e-4).all()
        got = rast[b][same]
        assert torch.allclose(got[:, 0].double(), ref.bary[same][:, 0], atol=1e-4)
        assert torch.allclose(got[:, 1].double(), ref.bary[same][:, 1], atol=1e-4)
        assert torch.allclose(got[:, 2].double(), ref.depth[same], atol=1e-5)


def test_interpolated_attributes_match_hit_points() -> None:
    """Interpolating world positions and random colours gives the ray caster's hit values."""
    vertices, faces = icosphere(2)
    colors = torch.rand(len(vertices), 3, generator=torch.Generator().manual_seed(0))
    mvp = make_cameras(CAMERAS[:2])
    rasterizer = TorchRasterizer()
    rast = rasterizer.rasterize(to_clip(vertices, mvp.float()), faces, (SIZE, SIZE))
    attrs = torch.cat([vertices, colors], dim=-1)
    image = rasterizer.interpolate(attrs, rast, faces)
    assert image.shape == (2, SIZE, SIZE, 6)
    for b in range(2):
        ref = ray_cast(vertices, faces, mvp[b], SIZE, SIZE)
        same = (triangle_ids(rast)[b] == ref.face) & (ref.face >= 0)
        corners = attrs.double()[faces[ref.face[same]]]  # [N, 3, 6]
        expected = (ref.bary[same][..., None] * corners).sum(dim=1)
        assert (image[b][same].double() - expected).abs().max() < 1e-3
        assert (image[b][ref.face < 0] == 0).all() or iou(ref.face >= 0, rast[b, ..., 3] > 0) > 0.99


def test_batched_attributes_and_empty_pixels() -> None:
    vertices, faces = overlapping_triangles()
    mvp = make_cameras(CAMERAS[:2])
    rasterizer = TorchRasterizer()
    rast = rasterizer.rasterize(to_clip(vertices, mvp.float()), faces, (32, 32))
    per_image = torch.stack([torch.ones(6, 1), 2 * torch.ones(6, 1)])
    out = rasterizer.interpolate(per_image, rast, faces)
    covered = rast[..., 3] > 0
    assert torch.allclose(out[0][covered[0]], torch.ones(1), atol=1e-5)
    assert torch.allclose(out[1][covered[1]], torch.full((1,), 2.0), atol=1e-5)
    assert (out[~covered] == 0).all()
    with pytest.raises(StudioError, match="Attributes for 3 images"):
        rasterizer.interpolate(torch.ones(3, 6, 1), rast, faces)


def test_unbatched_positions_and_chunking_agree() -> None:
    """[V, 4] input is batch 1; a tiny candidate budget (many chunks) gives the same raster."""
    vertices, faces = icosphere(2)
    clip = to_clip(vertices, make_cameras(CAMERAS[1:2]).float())[0]
    whole = TorchRasterizer().rasterize(clip, faces, (48, 40))
    chunked = TorchRasterizer(max_candidates=97).rasterize(clip, faces, (48, 40))
    assert whole.shape == (1, 48, 40, 4)
    assert torch.equal(whole, chunked)


def test_interpolate_gradcheck_attributes_and_positions() -> None:
    """Gradients w.r.t. attributes and (through the barycentrics) clip positions, in float64."""
    clip = torch.tensor(
        [
            [-0.71, -0.62, 0.1, 1.0],
            [0.83, -0.47, 0.3, 1.3],
            [-0.05, 0.77, -0.2, 0.9],
            [0.9, 0.85, 0.25, 1.1],
        ],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    attrs = torch.rand(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rasterizer = TorchRasterizer()
    rast = rasterizer.rasterize(clip, faces, (7, 6))
    assert (rast[..., 3] > 0).sum() > 10

    def from_attributes(a: torch.Tensor) -> torch.Tensor:
        return rasterizer.interpolate(a, rast, faces)

    def from_positions(p: torch.Tensor) -> torch.Tensor:
        return rasterizer.interpolate(attrs, rasterizer.rasterize(p, faces, (7, 6)), faces)

    assert torch.autograd.gradcheck(from_attributes, (attrs.clone().requires_grad_(),))
    assert torch.autograd.gradcheck(from_positions, (clip.clone().requires_grad_(),))


def test_no_holes_on_shared_edges_through_pixel_centres() -> None:
    """A grid whose vertices sit on pixel centres: every pixel inside it is covered exactly.

    Its horizontal, vertical and diagonal edges pass through many pixel centres exactly, so only
    a sound tie rule covers them (a strict ``> 0`` test leaves them empty, ``>= 0`` is lucky).
    """
    n, size = 6, 32
    coords = (2 * (torch.arange(n) * 5 + 3) + 1) / size - 1.0  # pixel centres 3, 8, ..., 28
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    z = torch.rand(n, n, generator=torch.Generator().manual_seed(2)) * 0.5
    clip = torch.stack([x, y, z, torch.ones_like(x)], dim=-1).reshape(-1, 4)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, d], [a, d, c]] if (i + j) % 2 else [[a, b, c], [b, d, c]]
    faces = torch.tensor(faces)
    for flip in (False, True):  # both windings
        tri = faces.flip(1) if flip else faces
        rast = TorchRasterizer().rasterize(clip, tri, (size, size))
        interior = rast[0, 4:28, 4:28, 3]
        assert (interior > 0).all()


def test_closed_mesh_renders_have_no_holes() -> None:
    """Inside a sphere's silhouette every pixel is covered, from many random viewpoints."""
    vertices, faces = icosphere(3)
    g = torch.Generator().manual_seed(3)
    directions = torch.nn.functional.normalize(torch.randn(8, 3, generator=g), dim=-1)
    clip = to_clip(vertices, make_cameras(directions * 2.5).float())
    rast = TorchRasterizer().rasterize(clip, faces, (96, 96))
    covered = rast[..., 3] > 0
    # a hole is an empty pixel whose four neighbours are covered
    inner = (
        covered[:, :-2, 1:-1] & covered[:, 2:, 1:-1] & covered[:, 1:-1, :-2] & covered[:, 1:-1, 2:]
    )
    assert not (inner & ~covered[:, 1:-1, 1:-1]).any()


def test_geometry_behind_the_camera() -> None:
    """A floor that extends behind the camera, and random triangles around it, match ray casting."""
    floor = torch.tensor(
        [[-10.0, -10.0, 0.0], [10.0, -10.0, 0.0], [10.0, 10.0, 0.0], [-10.0, 10.0, 0.0]]
    )
    floor_faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    g = torch.Generator().manual_seed(4)
    soup = torch.randn(60, 3, generator=g) * 2.0 + torch.tensor([0.0, 0.0, 0.5])
    soup_faces = torch.arange(60).reshape(20, 3)
    eye = torch.tensor([[0.0, 0.0, 0.5]])
    c2w_target = torch.tensor([[1.0, 0.0, 0.5]])
    from studio.data import cameras as cam

    c2w = cam.look_at(eye.double(), c2w_target.double(), torch.tensor([0.0, 0.0, 1.0]).double())
    fovy = torch.tensor([60 * math.pi / 180], dtype=torch.float64)
    mvp = cam.mvp_matrix(c2w, cam.projection_matrix(fovy, 1.0))
    for vertices, faces in ((floor, floor_faces), (soup, soup_faces)):
        clip = to_clip(vertices, mvp.float())
        assert (clip[0, :, 3] <= 0).any() and (clip[0, :, 3] > 0).any()
        rast = TorchRasterizer().rasterize(clip, faces, (SIZE, SIZE))
        ref = ray_cast(vertices, faces, mvp[0], SIZE, SIZE)
        ids = triangle_ids(rast)[0]
        assert (ref.face >= 0).sum() > 200
        assert iou(ids >= 0, ref.face >= 0) > 0.99
        both = (ids >= 0) & (ref.face >= 0)
        assert (ids[both] == ref.face[both]).float().mean() > 0.99
    # a triangle entirely behind the camera draws nothing
    behind = torch.tensor([[-1.0, -1.0, 0.5], [-1.0, 1.0, 0.5], [-2.0, 0.0, 1.5]])
    rast = TorchRasterizer().rasterize(
        to_clip(behind, mvp.float()), torch.tensor([[0, 1, 2]]), (32, 32)
    )
    assert (rast == 0).all()


def test_depth_ties_go_to_the_lowest_triangle_id() -> None:
    clip = torch.tensor([[-0.9, -0.9, 0.2, 1.0], [0.9, -0.9, 0.2, 1.0], [0.0, 0.9, 0.2, 1.0]])
    faces = torch.tensor([[0, 1, 2]] * 3)
    ids = triangle_ids(TorchRasterizer().rasterize(clip, faces, (16, 16)))
    assert ((ids == 0) | (ids == -1)).all() and (ids == 0).sum() > 50
    # a nearer copy wins regardless of its id
    nearer = torch.cat([clip, clip * torch.tensor([1.0, 1.0, 0.5, 1.0])])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 1, 2]])
    ids = triangle_ids(TorchRasterizer().rasterize(nearer, faces, (16, 16)))
    assert ((ids == 1) | (ids == -1)).all() and (ids == 1).sum() > 50


def test_orderable_depth_is_monotonic() -> None:
    z = torch.tensor([-1.0, -0.5, -1e-30, -0.0, 0.0, 1e-30, 0.25, 1.0])
    keys = orderable_depth(z)
    assert (keys[1:] >= keys[:-1]).all() and keys[3] == keys[4]
    assert (keys >= 0).all() and (keys < 2**32).all()


def test_make_rasterizer_and_errors() -> None:
    rasterizer = make_rasterizer("auto", "cpu")
    assert rasterizer.name == "torch"
    # an empty raster has no silhouette: antialias hands the image back (tests: test_antialias.py)
    color = torch.rand(1, 4, 4, 3)
    assert (
        rasterizer.antialias(
            color, torch.zeros(1, 4, 4, 4), torch.zeros(3, 4), torch.zeros(1, 3, dtype=torch.long)
        )
        is color
    )
    with pytest.raises(ConfigError, match="nvdiffrast"):
        make_rasterizer("nvdiffrast", "cpu")
    with pytest.raises(StudioError, match=r"\[B, V, 4\]"):
        rasterizer.rasterize(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), (4, 4))
