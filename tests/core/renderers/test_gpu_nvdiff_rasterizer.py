"""nvdiff-rasterizer with the nvdiffrast backend on CUDA (run on the GPU machine)."""

from __future__ import annotations

import pytest
import torch

from tests.core.renderers.test_nvdiff_rasterizer import (
    BACKGROUND,
    SphereGeometry,
    analytic_sphere,
    iou,
    make_renderer,
    views,
)

pytestmark = pytest.mark.gpu


def cuda_sphere() -> SphereGeometry:
    geometry = SphereGeometry().cuda()
    geometry.v_pos, geometry.faces = geometry.v_pos.cuda(), geometry.faces.cuda()
    return geometry


def test_renderer_with_nvdiffrast_matches_the_sphere_and_the_torch_backend() -> None:
    batch = views([0.0, 130.0], [10.0, -35.0])
    hit = analytic_sphere(batch)[0]
    cuda_batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    renderer = make_renderer(cuda_sphere(), backend="nvdiffrast")
    assert renderer.rasterizer_for(torch.device("cuda")).name == "nvdiffrast"
    out = renderer(**cuda_batch)
    reference = make_renderer(cuda_sphere(), backend="torch")(**cuda_batch)
    covered = out["opacity"][..., 0].cpu() > 0.5
    silhouette_iou = iou(covered, hit)
    interior = (out["opacity"][..., 0] == 1) & (reference["opacity"][..., 0] == 1)
    rgb_error = (out["comp_rgb"] - reference["comp_rgb"])[interior].abs()
    within = (rgb_error < 1e-3).float().mean().item()
    print(
        f"\nrenderer (nvdiffrast): silhouette IoU {silhouette_iou:.4f}; interior rgb vs torch "
        f"backend: {within:.4f} of pixels within 1e-3, max {rgb_error.max().item():.2e}"
    )
    assert silhouette_iou > 0.98
    # nvdiffrast snaps vertices to 1/16 px, so pixels next to an edge may take the neighbour
    assert within > 0.99 and rgb_error.max() < 5e-3
    background = out["opacity"][..., 0] == 0
    assert torch.allclose(out["comp_rgb"][background], torch.tensor(BACKGROUND).cuda())
    # antialiasing: fractional opacity only along the silhouette
    fractional = (out["opacity"] > 0) & (out["opacity"] < 1)
    assert fractional.any() and fractional.float().mean() < 0.05
    out["comp_rgb"].sum().backward()
