"""A latent voxel field and its renderer, as the ``sjc`` preset builds them, for loss tests."""

from __future__ import annotations

import torch

from studio_dreamfusion.backgrounds import SolidColor
from studio_dreamfusion.geometry.volume_grid import VolumeGrid
from studio_dreamfusion.materials import NoMaterial
from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer


def latent_field(seed: int = 0, size: int = 24) -> VolumeGrid:
    """A ``volume-grid`` like sjc's (density bias -1, 4 features) holding a random dense ball."""
    torch.manual_seed(seed)
    grid = VolumeGrid(
        {"radius": 1.0, "grid_size": [size] * 3, "density_bias": -1.0, "n_feature_dims": 4,
         "normal_type": None}
    )  # fmt: skip
    with torch.no_grad():
        axis = torch.linspace(-1, 1, size)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        ball = ((x**2 + y**2 + z**2).sqrt() < 0.6).float()
        grid.grid[0, 0] = 4.0 * ball + torch.randn(size, size, size)
        grid.grid[0, 1:] = torch.randn(4, size, size, size)
    return grid


def latent_renderer(geometry: VolumeGrid, backend: str, samples: int = 48) -> NeRFVolumeRenderer:
    """sjc's renderer settings: dense marching (no pruning), torch marching like nerfacc."""
    return NeRFVolumeRenderer(
        {
            "radius": 1.0,
            "num_samples_per_ray": samples,
            "grid_prune": False,
            "torch_sampling": "marching",
            "randomized": False,
            "backend": backend,
        },
        geometry=geometry,
        material=NoMaterial({"n_output_dims": 4, "color_activation": "none"}),
        background=SolidColor({"n_output_dims": 4, "color": [0.0] * 4}),
    )


def camera_rays(n: int = 8, distance: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``[1, n, n, 3]`` rays of a pinhole camera on the -x axis looking at the origin (fovy 60)."""
    half = torch.tan(torch.tensor(30.0).deg2rad())
    u = torch.linspace(-half, half, n)
    v, w = torch.meshgrid(u, u, indexing="ij")
    d = torch.stack([torch.ones_like(v), w, -v], dim=-1)
    d = d / d.norm(dim=-1, keepdim=True)
    o = torch.tensor([-distance, 0.0, 0.0]).expand_as(d)
    return o[None].contiguous(), d[None].contiguous()
