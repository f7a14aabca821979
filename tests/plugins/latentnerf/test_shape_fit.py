"""A NeRF shaped by the guide-shape loss alone (no guidance) takes the guide's silhouette: the
teddy bear guide, 200 Adam steps on random points of the box, five held-out views at distance 2.6
(measured: IoU 0.26 before, 0.93 after; the issue asks 0.85)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from studio.rasterize.torch_backend import TorchRasterizer
from studio_dreamfusion.materials import NoMaterial
from studio_latentnerf.guide_shapes import load_guide_shape
from studio_latentnerf.shape_loss import GuideFields, place_guide_mesh
from tests.core.rasterize.reference import iou, make_cameras, pixel_rays, to_clip
from tests.core.rasterize.test_silhouette_fit import fibonacci_directions
from tests.plugins.dreamfusion.test_nerf_fit import build

SIZE = 48


def guide_silhouettes(vertices: torch.Tensor, faces: torch.Tensor, mvp: torch.Tensor):
    """Coverage masks ``[B, SIZE, SIZE]`` of the placed guide mesh (PyTorch rasterizer)."""
    rast = TorchRasterizer().rasterize(to_clip(vertices, mvp).float(), faces, (SIZE, SIZE))
    return rast[..., 3] > 0


def nerf_silhouettes(renderer, mvp: torch.Tensor) -> torch.Tensor:
    """Opacity > 0.5 ``[B, SIZE, SIZE]`` of the NeRF seen through the same cameras."""
    masks = []
    with torch.no_grad():
        for view in mvp:
            origins, directions = pixel_rays(view, SIZE, SIZE)
            out = renderer(
                rays_o=origins.float().reshape(1, SIZE, SIZE, 3),
                rays_d=F.normalize(directions.float(), dim=-1).reshape(1, SIZE, SIZE, 3),
                light_positions=torch.zeros(1, 3),
            )
            masks.append(out["opacity"][0, ..., 0] > 0.5)
    return torch.stack(masks)


def test_the_shape_loss_alone_carves_the_guide_from_held_out_views() -> None:
    torch.manual_seed(0)
    mesh = load_guide_shape("teddy")
    placed = place_guide_mesh(mesh.vertices)
    fields = GuideFields.from_mesh(placed, mesh.faces, radius=1.0, resolution=64)
    geometry, renderer = build(NoMaterial({"n_output_dims": 3}), None, 3, samples=64)
    renderer.eval()

    vertices = torch.tensor(placed, dtype=torch.float32)
    faces = torch.tensor(mesh.faces, dtype=torch.int32)
    held_out = make_cameras(fibonacci_directions(5, twist=0.7) * 2.6)
    target = guide_silhouettes(vertices, faces, held_out)
    before = min(
        iou(a, b) for a, b in zip(nerf_silhouettes(renderer, held_out), target, strict=True)
    )

    optimizer = torch.optim.Adam(geometry.parameters(), lr=0.01)
    for _ in range(200):
        points = torch.rand(4096, 3) * 2.0 - 1.0
        loss = fields.loss(points, geometry.forward_density(points)) / points.shape[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = min(
        iou(a, b) for a, b in zip(nerf_silhouettes(renderer, held_out), target, strict=True)
    )
    print(f"held-out silhouette IoU to the guide: before {before:.3f}, after {after:.3f}")
    assert after >= 0.85 and after > before + 0.2
