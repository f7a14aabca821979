"""An analytic test scene: coloured spheres rendered by exact ray/sphere intersection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from studio.data import cameras as cam


@dataclass
class Sphere:
    center: tuple[float, float, float]
    radius: float
    color: tuple[float, float, float]


SPHERES = [
    Sphere((0.25, 0.0, 0.0), 0.4, (0.9, 0.2, 0.15)),
    Sphere((-0.35, 0.15, 0.1), 0.3, (0.15, 0.35, 0.9)),
]
BACKGROUND = (1.0, 1.0, 1.0)


def orbit_cameras(
    n: int,
    height: int,
    width: int,
    distance: float = 2.5,
    fovy_deg: float = 40.0,
    azimuth_offset: float = 0.0,
    elevations: tuple[float, ...] = (-15.0, 10.0, 35.0),
) -> dict[str, torch.Tensor]:
    """``n`` cameras on an orbit (alternating elevations) looking at the origin."""
    azimuth = (torch.arange(n) * 360.0 / n + azimuth_offset) * cam.DEG
    elevation = torch.tensor([elevations[i % len(elevations)] for i in range(n)]) * cam.DEG
    positions = cam.spherical_to_position(elevation, azimuth, torch.full((n,), distance))
    c2w = cam.look_at(positions, torch.zeros(n, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3))
    fovy = torch.full((n,), fovy_deg * cam.DEG)
    focal = cam.focal_from_fovy(height, fovy)
    dirs = cam.ray_directions(height, width, 1.0)[None].repeat(n, 1, 1, 1)
    dirs[..., :2] = dirs[..., :2] / focal[:, None, None, None]
    rays_o, rays_d = cam.world_rays(dirs, c2w)
    lights = positions * 1.5 + torch.tensor([0.0, 0.0, 1.0])
    return {
        "rays_o": rays_o,
        "rays_d": rays_d,
        "light_positions": lights,
        "camera_positions": positions,
    }


def intersect(rays_o: torch.Tensor, rays_d: torch.Tensor, spheres=SPHERES):
    """Nearest hit per ray: ``(t [..], sphere index [..] or -1, normal [.., 3])``."""
    best_t = torch.full(rays_o.shape[:-1], math.inf)
    best_i = torch.full(rays_o.shape[:-1], -1, dtype=torch.long)
    best_n = torch.zeros_like(rays_o)
    for i, s in enumerate(spheres):
        oc = rays_o - torch.tensor(s.center)
        b = (oc * rays_d).sum(-1)
        c = (oc * oc).sum(-1) - s.radius**2
        disc = b * b - c
        t = -b - torch.sqrt(disc.clamp(min=0.0))
        hit = (disc > 0) & (t > 0) & (t < best_t)
        best_t = torch.where(hit, t, best_t)
        best_i = torch.where(hit, torch.full_like(best_i, i), best_i)
        point = rays_o + rays_d * t[..., None]
        normal = F.normalize(point - torch.tensor(s.center), dim=-1)
        best_n = torch.where(hit[..., None], normal, best_n)
    return best_t, best_i, best_n


def render_flat(rays_o: torch.Tensor, rays_d: torch.Tensor) -> torch.Tensor:
    """Unlit colours: each sphere's flat colour on a white background ``[..., 3]``."""
    _, index, _ = intersect(rays_o, rays_d)
    colors = torch.tensor([s.color for s in SPHERES] + [BACKGROUND])
    return colors[index]  # index -1 selects the background (last row)


SHADED_BACKGROUND = (0.2, 0.4, 0.9)  # a hue no grey shade of the spheres can match


def render_diffuse(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    lights: torch.Tensor,
    ambient: float = 0.1,
    diffuse: float = 0.9,
    albedo: float = 0.8,
    background: tuple[float, float, float] = SHADED_BACKGROUND,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lambert-shaded grey spheres: ``(image [..., 3], hit mask [..], normals [..., 3])``."""
    t, index, normal = intersect(rays_o, rays_d)
    hit = index >= 0
    points = rays_o + rays_d * torch.where(hit, t, torch.zeros_like(t))[..., None]
    light = lights.reshape(lights.shape[0], *([1] * (rays_o.dim() - 2)), 3)
    to_light = F.normalize(light - points, dim=-1)
    lambert = (normal * to_light).sum(-1, keepdim=True).clamp(min=0.0)
    shaded = albedo * (lambert * diffuse + ambient)
    image = torch.where(hit[..., None], shaded.expand_as(points), torch.tensor(background))
    return image, hit, normal


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b.clamp(0, 1)).item()
    return -10.0 * math.log10(max(mse, 1e-12))
