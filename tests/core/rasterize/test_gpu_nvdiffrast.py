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


@pytest.mark.parametrize("mesh", [icosphere, cube], ids=["sphere", "cube"])
def test_torch_matches_nvdiffrast(nvdiffrast: NvdiffrastRasterizer, mesh) -> None:
    vertices, faces = mesh() if mesh is cube else mesh(5)
    vertices, faces = vertices.cuda(), faces.cuda()
    clip = to_clip(vertices, make_cameras(CAMERAS).float().cuda()).contiguous()
    ours = TorchRasterizer()
    rast_t = ours.rasterize(clip, faces, (SIZE, SIZE))
    rast_n = nvdiffrast.rasterize(clip, faces, (SIZE, SIZE))
    ids_t, ids_n = triangle_ids(rast_t), triangle_ids(rast_n)
    coverage = iou(ids_t >= 0, ids_n >= 0)
    both = (ids_t >= 0) & (ids_n >= 0)
    same_id = (ids_t[both] == ids_n[both]).float().mean().item()
    attrs = torch.cat([vertices, torch.rand_like(vertices)], dim=-1).requires_grad_(True)
    out_t, out_n = (
        ours.interpolate(attrs, rast_t, faces),
        nvdiffrast.interpolate(attrs, rast_n, faces),
    )
    error = (out_t - out_n)[both].abs()
    depth_error = (rast_t[..., 2] - rast_n[..., 2])[both].abs().max().item()
    weights = torch.rand_like(out_t)
    (grad_t,) = torch.autograd.grad((out_t * weights).sum(), attrs)
    (grad_n,) = torch.autograd.grad((out_n * weights).sum(), attrs)
    grad_error = ((grad_t - grad_n).abs().max() / grad_n.abs().max()).item()
    print(
        f"\n{mesh.__name__}: {faces.shape[0]} faces, IoU {coverage:.5f}, same triangle "
        f"{same_id:.5f}, attribute max error {error.max().item():.2e} (p99.9 "
        f"{error.flatten().quantile(0.999).item():.2e}), z/w max error {depth_error:.2e}, "
        f"attribute-gradient relative error {grad_error:.2e}"
    )
    assert coverage > 0.99
    assert same_id > 0.99
    assert error.max() < 1e-3
    assert depth_error < 1e-4
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
