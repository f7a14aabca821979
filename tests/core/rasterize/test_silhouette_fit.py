"""Silhouette gradients on the CPU: fit a mesh to an analytic sphere's silhouettes (torch backend).

The loss compares the antialiased coverage mask with the sphere's exact per-pixel coverage; the
raster's own coverage is a step function of the vertices, so every gradient that moves the mesh's
outline comes from ``antialias``. With antialias replaced by the identity, the outline cannot move.
"""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from studio.rasterize.torch_backend import TorchRasterizer
from tests.core.rasterize.reference import iou, make_cameras, to_clip

SIZE = 64
CENTRE = torch.tensor([0.12, -0.06, 0.08], dtype=torch.float64)
RADIUS = 0.55


def fibonacci_directions(n: int, twist: float = 0.0) -> torch.Tensor:
    """``n`` unit vectors spread evenly over the sphere."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i + twist
    r = (1 - z * z).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1)


def pixel_rays(inverse: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(origins, directions)`` ``[n * n, 3]`` (float64) of rays through an ``n x n`` grid of
    pixel-centred points, unprojected through one view's inverse ``mvp``."""
    sub = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 - 1
    y, x = torch.meshgrid(sub, sub, indexing="ij")
    ends = []
    for z in (-1.0, 1.0):
        ndc = torch.stack([x, y, torch.full_like(x, z), torch.ones_like(x)], dim=-1)
        world = ndc.reshape(-1, 4) @ inverse.T
        ends.append(world[:, :3] / world[:, 3:])
    return ends[0], torch.nn.functional.normalize(ends[1] - ends[0], dim=-1)


def sphere_coverage(mvp: torch.Tensor, size: int, samples: int = 4) -> torch.Tensor:
    """Exact-ish coverage ``[B, size, size, 1]`` of the analytic sphere: the fraction of
    ``samples x samples`` sub-pixel rays that hit it (rays unprojected through ``mvp``)."""
    out = []
    for inverse in torch.linalg.inv(mvp.double()):
        origin, direction = pixel_rays(inverse, size * samples)
        offset = origin - CENTRE
        b = (offset * direction).sum(-1)
        hit = b**2 - ((offset * offset).sum(-1) - RADIUS**2) > 0
        out.append(hit.double().reshape(size, samples, size, samples).mean(dim=(1, 3)))
    return torch.stack(out)[..., None].float()


class NoAntialias(TorchRasterizer):
    """The torch backend as it was: antialias is the identity."""

    def antialias(self, color, rast, pos_clip, tri):
        return color


def fit(rasterizer: TorchRasterizer, steps: int) -> tuple[list[float], list[float], torch.Tensor]:
    """Optimise per-vertex offsets of a small icosphere (radius 0.4 at the origin) against the
    target's coverage in 16 views; returns held-out silhouette IoUs before and after, and the
    vertex gradient of the coverage loss alone at the start."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    base = torch.tensor(sphere.vertices, dtype=torch.float32)
    faces = torch.tensor(sphere.faces)
    edges = torch.tensor(sphere.edges_unique)
    degree = torch.zeros(len(base)).index_add_(0, edges.reshape(-1), torch.ones(edges.numel()))
    train = make_cameras(fibonacci_directions(16) * 2.5)
    held_out = make_cameras(fibonacci_directions(5, twist=1.0) * 2.7)
    train_target, held_out_target = sphere_coverage(train, SIZE), sphere_coverage(held_out, SIZE)

    def render(vertices: torch.Tensor, mvp: torch.Tensor) -> torch.Tensor:
        clip = to_clip(vertices, mvp.float())
        rast = rasterizer.rasterize(clip.detach(), faces, (SIZE, SIZE))  # only its ids are used
        return rasterizer.antialias((rast[..., 3:] > 0).float(), rast, clip, faces)

    def held_out_iou(vertices: torch.Tensor) -> list[float]:
        with torch.no_grad():
            mask = render(vertices, held_out)[..., 0] > 0.5
        return [iou(mask[b], held_out_target[b, ..., 0] > 0.5) for b in range(len(held_out))]

    offset = torch.zeros_like(base, requires_grad=True)
    data_loss = ((render(base + offset, train) - train_target) ** 2).mean()
    first_gradient = torch.zeros_like(base)
    if data_loss.requires_grad:
        (first_gradient,) = torch.autograd.grad(data_loss, offset)
    before = held_out_iou(base)
    optimizer = torch.optim.Adam([offset], lr=0.03)
    for _ in range(steps):
        vertices = base + offset
        data_loss = ((render(vertices, train) - train_target) ** 2).mean()
        neighbours = (
            torch.zeros_like(vertices)
            .index_add(0, edges[:, 0], vertices[edges[:, 1]])
            .index_add(0, edges[:, 1], vertices[edges[:, 0]])
        )
        laplacian = vertices - neighbours / degree[:, None]
        loss = data_loss + 0.5 * (laplacian**2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_iou(base + offset.detach())
    return before, after, first_gradient


@pytest.mark.slow
def test_mesh_silhouette_fits_the_sphere_through_antialias_gradients() -> None:
    before, after, gradient = fit(TorchRasterizer(), steps=40)
    print(
        f"\nheld-out silhouette IoU: before {min(before):.3f}-{max(before):.3f}, "
        f"after {min(after):.3f}-{max(after):.3f}"
    )
    assert max(before) < 0.6
    assert min(after) >= 0.95
    assert gradient.abs().sum() > 0


@pytest.mark.slow
def test_without_antialias_the_silhouette_does_not_move() -> None:
    before, after, gradient = fit(NoAntialias(), steps=10)
    # the coverage loss gives no vertex gradient at all; only the smoothing term moves vertices
    assert torch.equal(gradient, torch.zeros_like(gradient))
    assert max(after) < 0.6 and max(after) <= max(before) + 1e-6
