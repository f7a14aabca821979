"""Isosurface extraction on CUDA (GPU machine): same meshes as on the CPU, the 128 grid fits."""

from __future__ import annotations

import time

import pytest
import torch

from studio.mesh import MarchingTetrahedraHelper, extract_isosurface
from tests.core.mesh.analytic import torus_sdf

pytestmark = pytest.mark.gpu

BBOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _extract(method: str, resolution: int, device: str):
    return extract_isosurface(
        torus_sdf,
        BBOX.to(device),
        method=method,
        resolution=resolution,
        threshold=0.0,
        level_fn=lambda field, threshold: field - threshold,
    )


@pytest.mark.parametrize("method", ["mt", "mc-cpu"])
def test_cuda_matches_cpu(method):
    cpu = _extract(method, 64, "cpu")
    cuda = _extract(method, 64, "cuda")
    assert cuda.v_pos.is_cuda and cuda.t_pos_idx.is_cuda
    assert cuda.n_faces == cpu.n_faces
    assert torch.equal(cuda.t_pos_idx.cpu(), cpu.t_pos_idx)
    # the field is evaluated on each device (float32 rounding differs), so vertices agree to
    # rounding amplified by the edge interpolation, far below a grid cell (2/64)
    error = (cuda.v_pos.cpu() - cpu.v_pos).abs().max().item()
    print(f"{method}: max vertex difference CUDA vs CPU {error:.2e}")
    assert error < 1e-4


def test_marching_tetrahedra_at_128_with_gradients():
    helper = MarchingTetrahedraHelper(128).cuda()
    points = helper.grid_vertices * 2 - 1
    level = torus_sdf(points).requires_grad_(True)
    deformation = torch.zeros_like(points, requires_grad=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    mesh = helper(level, deformation)
    mesh.v_pos.sum().backward()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"mt 128 forward+backward: {seconds * 1e3:.1f} ms, peak {peak:.2f} GiB, {mesh}")
    assert mesh.n_faces > 100_000
    assert level.grad.abs().sum() > 0 and deformation.grad.abs().sum() > 0
    assert mesh.to_trimesh().is_watertight
