"""Magic3D's mesh stage on the CPU: DMTet's SDF grid moves its silhouette through the torch
backend's antialias (and cannot without it)."""

from __future__ import annotations

import pytest
import torch

from studio.rasterize.torch_backend import TorchRasterizer
from studio_magic3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid
from tests.core.rasterize.reference import iou, make_cameras, to_clip
from tests.core.rasterize.test_silhouette_fit import (
    SIZE,
    NoAntialias,
    fibonacci_directions,
    sphere_coverage,
)


def small_grid() -> TetrahedraSDFGrid:
    """A 16^3 grid holding a sphere of radius 0.35 at the origin (the target: 0.55, off-centre)."""
    torch.manual_seed(0)
    grid = TetrahedraSDFGrid({"isosurface_resolution": 16, "geometry_only": True})
    with torch.no_grad():
        grid.sdf.copy_(grid.grid_points().norm(dim=-1, keepdim=True) - 0.35)
    return grid


def render(grid: TetrahedraSDFGrid, rasterizer: TorchRasterizer, mvp: torch.Tensor):
    mesh = grid.isosurface()
    clip = to_clip(mesh.v_pos, mvp.float())
    rast = rasterizer.rasterize(clip.detach(), mesh.t_pos_idx, (SIZE, SIZE))
    return rasterizer.antialias((rast[..., 3:] > 0).float(), rast, clip, mesh.t_pos_idx)


@pytest.mark.slow
def test_dmtet_grid_fits_sphere_silhouettes_on_the_cpu() -> None:
    train = make_cameras(fibonacci_directions(16) * 2.5)
    held_out = make_cameras(fibonacci_directions(5, twist=1.0) * 2.7)
    train_target, held_out_target = sphere_coverage(train, SIZE), sphere_coverage(held_out, SIZE)

    def held_out_iou(grid: TetrahedraSDFGrid) -> float:
        with torch.no_grad():
            mask = render(grid, TorchRasterizer(), held_out)[..., 0] > 0.5
        return min(iou(mask[b], held_out_target[b, ..., 0] > 0.5) for b in range(len(held_out)))

    # without antialias, the silhouette loss reaches neither the SDF nor the deformation
    grid = small_grid()
    loss = ((render(grid, NoAntialias(), train) - train_target) ** 2).mean()
    assert not loss.requires_grad

    rasterizer = TorchRasterizer()
    before = held_out_iou(grid)
    optimizer = torch.optim.Adam(grid.parameters(), lr=0.03)
    for _ in range(40):
        loss = ((render(grid, rasterizer, train) - train_target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_iou(grid)
    print(f"\nDMTet (16^3) held-out silhouette IoU: {before:.3f} -> {after:.3f}")
    assert before < 0.5
    assert after >= 0.95
