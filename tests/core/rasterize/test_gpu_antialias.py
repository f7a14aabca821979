"""The PyTorch antialias and texture against nvdiffrast's, on CUDA (run on the GPU machine).

Acceptance (the Magic3D issue): antialiased coverage IoU > 0.99, the same blended values where both
blend the same pixels, silhouette gradients w.r.t. the vertices with cosine similarity > 0.9 and
norms within 25% of each other; and
``texture`` equal to ``dr.texture``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from studio.rasterize.nvdiffrast_backend import NvdiffrastRasterizer
from studio.rasterize.torch_backend import TorchRasterizer
from tests.core.rasterize.reference import make_cameras, to_clip
from tests.core.rasterize.test_gpu_nvdiffrast import nvdiffrast  # noqa: F401 - fixture
from tests.core.rasterize.test_torch_backend import cube, icosphere, overlapping_triangles

pytestmark = pytest.mark.gpu

SIZE = 256
CAMERAS = torch.tensor([[3.0, 0.0, 0.0], [2.1, 1.7, 1.2], [-1.0, -2.5, 1.6], [0.4, 0.3, -2.9]])
#: name -> (mesh, image size). "fine-sphere": a DMTet-fine mesh at the 128x128 of Fantasia3D's
#: primitives geometry stage: 48 blended pixels over the 4 views. Given the same raster the two
#: antialiases agree as on the others; from each backend's own raster (coverage IoU 0.9996) a
#: few outline pixels differ, and with so few blended ones the vertex gradients agree with
#: cosine 0.82 only (0.63 at 64x64, 16 blended pixels; H100, 2026-12-07): what the GPU's weaker
#: 64-px Fantasia3D table came from (docs/primitives.md). Its own-raster bound is set there.
MESHES = {
    "sphere": (lambda: icosphere(3), SIZE),
    "cube": (cube, SIZE),
    "two-triangles": (overlapping_triangles, SIZE),
    "fine-sphere": (lambda: icosphere(4), 128),
}
#: The own-raster gradient cosine each mesh must reach (the Magic3D issue's 0.9 where the
#: silhouette has hundreds of blended pixels; see "fine-sphere" above).
OWN_RASTER_COSINE = {"sphere": 0.9, "cube": 0.9, "two-triangles": 0.9, "fine-sphere": 0.7}


def soft_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.minimum(a, b).sum() / torch.maximum(a, b).sum().clamp(min=1e-12)).item()


def render(
    rasterizer,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    mvp: torch.Tensor,
    rast=None,
    size: int = SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(antialiased coverage [B, H, W, 1], raster)``; ``rast`` given: antialias that raster."""
    clip = to_clip(vertices, mvp).contiguous()
    if rast is None:
        rast = rasterizer.rasterize(clip, faces, (size, size))
    mask = (rast[..., 3:] > 0).float()
    return rasterizer.antialias(mask, rast, clip, faces), rast


@pytest.mark.parametrize("name", sorted(MESHES))
def test_antialias_matches_nvdiffrast(nvdiffrast: NvdiffrastRasterizer, name: str) -> None:  # noqa: F811
    make_mesh, size = MESHES[name]
    vertices, faces = make_mesh()
    vertices, faces = vertices.cuda(), faces.cuda()
    mvp = make_cameras(CAMERAS).float().cuda()
    ours = TorchRasterizer()
    clip = to_clip(vertices, mvp).contiguous()
    rast = nvdiffrast.rasterize(clip, faces, (size, size))

    # the same raster and colours (random per vertex, black background) through both
    colors = torch.rand(
        vertices.shape[0], 3, device="cuda", generator=torch.Generator("cuda").manual_seed(0)
    )
    image = nvdiffrast.interpolate(colors, rast, faces)
    out_t = ours.antialias(image, rast, clip, faces)
    out_n = nvdiffrast.antialias(image, rast, clip, faces)
    changed_t, changed_n = (out_t != image).any(-1), (out_n != image).any(-1)
    both = changed_t & changed_n
    union = (changed_t | changed_n).sum().item()
    same_pixels = both.sum().item() / max(union, 1)
    error = (out_t - out_n)[both].abs().amax(-1)
    within = (error < 1e-4).float().mean().item() if both.any() else 1.0
    worst = error.max().item() if both.any() else 0.0

    # coverage and silhouette gradients: a loss against a slightly larger, shifted copy
    target, _ = render(nvdiffrast, vertices * 1.08 + 0.03, faces, mvp, size=size)
    gradients, coverages = {}, {}
    for label, rasterizer, shared in (
        ("torch", ours, rast),
        ("nvdiffrast", nvdiffrast, rast),
        ("torch, own raster", ours, None),
    ):
        v = vertices.clone().requires_grad_()
        coverage, _ = render(rasterizer, v, faces, mvp, rast=shared, size=size)
        ((coverage - target) ** 2).sum().backward()
        gradients[label], coverages[label] = v.grad.flatten(), coverage.detach()
    cosine = F.cosine_similarity(gradients["torch"], gradients["nvdiffrast"], dim=0).item()
    cosine_own = F.cosine_similarity(
        gradients["torch, own raster"], gradients["nvdiffrast"], dim=0
    ).item()
    # the same strength too: a silhouette loss must move a mesh as far on either backend (the
    # Fantasia3D geometry stage grows its shapes on the CPU, not on the GPU; docs/primitives.md)
    ratio = (gradients["torch"].norm() / gradients["nvdiffrast"].norm()).item()
    iou = soft_iou(coverages["torch"], coverages["nvdiffrast"])
    iou_own = soft_iou(coverages["torch, own raster"], coverages["nvdiffrast"])
    print(
        f"\n{name}: {faces.shape[0]} faces, {size}px x {len(CAMERAS)}; blended pixels: torch "
        f"{changed_t.sum().item()}, nvdiffrast {changed_n.sum().item()}, both {both.sum().item()} "
        f"({same_pixels:.3f} of either); where both blend: {within:.4f} within 1e-4, max "
        f"{worst:.2e}; coverage IoU {iou:.5f} (own raster {iou_own:.5f}); vertex-gradient "
        f"cosine {cosine:.4f} (own raster {cosine_own:.4f}), norm ratio torch / nvdiffrast "
        f"{ratio:.3f}"
    )
    assert changed_n.any() and changed_t.any()
    assert iou > 0.99 and iou_own > 0.99
    assert within > 0.99 and worst < 1e-2
    assert cosine > 0.9 and cosine_own > OWN_RASTER_COSINE[name]
    assert 0.8 < ratio < 1.25


@pytest.mark.parametrize("boundary_mode", ["wrap", "clamp"])
@pytest.mark.parametrize("filter_mode", ["linear", "nearest"])
def test_texture_matches_nvdiffrast(
    nvdiffrast: NvdiffrastRasterizer,  # noqa: F811
    filter_mode: str,
    boundary_mode: str,
) -> None:
    g = torch.Generator("cuda").manual_seed(1)
    tex = torch.rand(2, 24, 40, 3, device="cuda", generator=g)
    uv = torch.rand(2, 64, 48, 2, device="cuda", generator=g) * 2.0 - 0.5
    results = {}
    for label, rasterizer in (("torch", TorchRasterizer()), ("nvdiffrast", nvdiffrast)):
        t, c = tex.clone().requires_grad_(), uv.clone().requires_grad_()
        out = rasterizer.texture(t, c, filter_mode=filter_mode, boundary_mode=boundary_mode)
        weights = torch.rand(
            out.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(2)
        )
        (out * weights).sum().backward()
        results[label] = (out.detach(), t.grad, c.grad)
    (out_t, tex_t, uv_t), (out_n, tex_n, uv_n) = results["torch"], results["nvdiffrast"]
    mismatch = ((out_t - out_n).abs() > 1e-5).any(-1).float().mean().item()
    tex_error = ((tex_t - tex_n).abs().max() / tex_n.abs().max()).item()
    print(
        f"\ntexture {filter_mode}/{boundary_mode}: max |difference| "
        f"{(out_t - out_n).abs().max().item():.2e}, samples off by > 1e-5: {mismatch:.5f}; "
        f"tex-gradient relative error {tex_error:.2e}"
    )
    # nearest sampling may round a sample lying on a texel border either way
    assert mismatch < (1e-3 if filter_mode == "nearest" else 1e-9)
    if filter_mode == "linear":
        assert tex_error < 1e-3
        cosine = F.cosine_similarity(uv_t.flatten(), uv_n.flatten(), dim=0).item()
        print(f"uv-gradient cosine {cosine:.6f}")
        assert cosine > 0.999
