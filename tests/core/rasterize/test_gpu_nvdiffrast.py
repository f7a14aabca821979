"""The PyTorch rasterizer against nvdiffrast (loaded through studio's compat loader), on CUDA."""

from __future__ import annotations

import time

import pytest
import torch

from studio.rasterize import make_rasterizer, triangle_ids
from studio.rasterize.nvdiffrast_backend import NvdiffrastRasterizer
from studio.rasterize.nvdiffrast_compat import load_nvdiffrast
from studio.rasterize.torch_backend import TorchRasterizer
from tests.core.rasterize.reference import iou, make_cameras, to_clip
from tests.core.rasterize.test_torch_backend import cube, icosphere

pytestmark = pytest.mark.gpu

SIZE = 256
CAMERAS = torch.tensor([[3.0, 0.0, 0.0], [2.1, 1.7, 1.2], [-1.0, -2.5, 1.6], [0.4, 0.3, -2.9]])


@pytest.fixture(scope="module")
def nvdiffrast() -> NvdiffrastRasterizer:
    started = time.perf_counter()
    load_nvdiffrast()
    print(f"\nnvdiffrast plugin ready in {time.perf_counter() - started:.1f} s")
    return NvdiffrastRasterizer("cuda")


def screen_triangles(clip: torch.Tensor, faces: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel-space corners ``[B, F, 3, 2]`` (pixel (i, j) centre at (j, i)); all w > 0 here."""
    ndc = clip[..., :2].double() / clip[..., 3:].double()
    return ((ndc + 1) * size / 2 - 0.5)[:, faces]


def distance_to_triangle(point: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """``(distance to the triangle (0 inside), distance to its boundary)`` of points ``[N, 2]``."""
    a, b = corners, corners.roll(-1, dims=1)  # [N, 3, 2] edges a -> b
    ab, ap = b - a, point[:, None] - a
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-30)).clamp(0, 1)
    boundary = (ap - t[..., None] * ab).norm(dim=-1).min(dim=1).values
    cross = ab[..., 0] * ap[..., 1] - ab[..., 1] * ap[..., 0]
    inside = (cross >= 0).all(dim=1) | (cross <= 0).all(dim=1)
    return torch.where(inside, 0.0, boundary), boundary


@pytest.mark.parametrize("mesh", [icosphere, cube], ids=["sphere", "cube"])
def test_torch_matches_nvdiffrast(nvdiffrast: NvdiffrastRasterizer, mesh) -> None:
    """Same coverage and attributes; every disagreement is explained by nvdiffrast snapping
    vertices to 1/16 pixel: the pixel centre lies within 1/16 px of both triangles involved and
    of the boundary of at least one of them."""
    vertices, faces = mesh() if mesh is cube else mesh(5)
    vertices, faces = vertices.cuda(), faces.cuda()
    clip = to_clip(vertices, make_cameras(CAMERAS).float().cuda()).contiguous()
    ours = TorchRasterizer()
    rast_t = ours.rasterize(clip, faces, (SIZE, SIZE))
    rast_n = nvdiffrast.rasterize(clip, faces, (SIZE, SIZE))
    ids_t, ids_n = triangle_ids(rast_t), triangle_ids(rast_n)
    coverage = iou(ids_t >= 0, ids_n >= 0)
    both = (ids_t >= 0) & (ids_n >= 0)
    same = both & (ids_t == ids_n)
    same_fraction = (same.sum() / both.sum()).item()

    # disagreements: how far the pixel centre is from each rasterizer's triangle
    b, i, j = (ids_t != ids_n).nonzero(as_tuple=True)
    centre = torch.stack([j, i], dim=-1).double()
    tris = screen_triangles(clip, faces, SIZE)
    worst, near_boundary = 0.0, torch.zeros_like(b, dtype=torch.bool)
    for ids in (ids_t, ids_n):
        face = ids[b, i, j]
        has = face >= 0
        to_tri, to_edge = distance_to_triangle(centre[has], tris[b[has], face[has]])
        worst = max(worst, to_tri.max().item() if has.any() else 0.0)
        near_boundary[has] |= to_edge < 1 / 16
    attrs = torch.cat([vertices, torch.rand_like(vertices)], dim=-1).requires_grad_(True)
    out_t = ours.interpolate(attrs, rast_t, faces)
    out_n = nvdiffrast.interpolate(attrs, rast_n, faces)
    error = (out_t - out_n)[same].abs().max().item()
    error_both = (out_t - out_n)[both].abs()
    depth_error = (rast_t[..., 2] - rast_n[..., 2])[same].abs().max().item()
    weights = torch.rand_like(out_t) * same[..., None]
    (grad_t,) = torch.autograd.grad((out_t * weights).sum(), attrs)
    (grad_n,) = torch.autograd.grad((out_n * weights).sum(), attrs)
    grad_error = ((grad_t - grad_n).abs().max() / grad_n.abs().max()).item()
    print(
        f"\n{mesh.__name__}: {faces.shape[0]} faces, {SIZE}px x {len(CAMERAS)}: coverage IoU "
        f"{coverage:.5f}; same triangle on {same_fraction:.4f} of pixels both cover; "
        f"{len(b)} disagreeing pixels, each within {worst:.3f} px of both triangles, "
        f"{near_boundary.float().mean().item():.3f} of them within 1/16 px of an edge; "
        f"same-triangle pixels: attribute max error {error:.2e}, z/w {depth_error:.2e}, "
        f"attribute-gradient relative error {grad_error:.2e}; all pixels both cover: "
        f"attribute p99.9 {error_both.flatten().quantile(0.999).item():.2e}, "
        f"max {error_both.max().item():.2e}"
    )
    assert coverage > 0.99
    assert same_fraction > 0.98
    assert worst < 1 / 16 and near_boundary.all()
    assert error < 1e-3
    assert depth_error < 1e-5
    assert grad_error < 1e-3


def test_antialias_only_touches_silhouettes(nvdiffrast: NvdiffrastRasterizer) -> None:
    vertices, faces = icosphere(4)
    clip = to_clip(vertices.cuda(), make_cameras(CAMERAS[:1]).float().cuda()).contiguous()
    faces = faces.cuda()
    rast = nvdiffrast.rasterize(clip, faces, (SIZE, SIZE))
    mask = (rast[..., 3:] > 0).float()
    smooth = nvdiffrast.antialias(mask, rast, clip, faces)
    changed = (smooth != mask)[0, ..., 0]
    edge = mask[0, 1:, :, 0] != mask[0, :-1, :, 0]
    near_edge = torch.zeros_like(changed)
    near_edge[1:] |= edge
    near_edge[:-1] |= edge
    edge = mask[0, :, 1:, 0] != mask[0, :, :-1, 0]
    near_edge[:, 1:] |= edge
    near_edge[:, :-1] |= edge
    assert changed.any() and not (changed & ~near_edge).any()


def test_auto_picks_nvdiffrast_on_cuda(nvdiffrast: NvdiffrastRasterizer) -> None:
    assert make_rasterizer("auto", "cuda").name == "nvdiffrast"
    assert make_rasterizer("torch", "cuda").name == "torch"
