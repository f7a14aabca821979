"""The nvdiff-rasterizer renderer (PyTorch backend) on a sphere mesh, against analytic values."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import trimesh

from studio.backgrounds.base import BaseBackground
from studio.data import cameras as cam
from studio.errors import ConfigError
from studio.materials.base import BaseMaterial
from studio.mesh.mesh import Mesh
from studio.registry import discover
from studio.renderers.nvdiff_rasterizer import NVDiffRasterizer

RADIUS, DISTANCE, FOVY, SIZE = 0.6, 2.5, 40.0, 64
BACKGROUND = (0.2, 0.4, 0.6)


class SphereGeometry(torch.nn.Module):
    """``isosurface()`` is a sphere mesh; features at points are ``scale * (p + 1) / 2``."""

    def __init__(self, v_pos: torch.Tensor | None = None):
        super().__init__()
        sphere = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
        default = torch.tensor(sphere.vertices, dtype=torch.float32)
        self.v_pos = v_pos if v_pos is not None else default
        self.faces = torch.tensor(sphere.faces)
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.calls = 0

    def isosurface(self) -> Mesh:
        return Mesh(self.v_pos, self.faces)

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        assert not output_normal and points.dim() == 2
        self.calls += 1
        return {"features": self.scale * (points + 1) / 2}


class RecordingMaterial(BaseMaterial):
    """Colour = features; records what the renderer passed."""

    requires_normal = True

    def forward(self, features: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.seen = {"features": features, **kwargs}
        return features


class Constant(BaseBackground):
    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        self.dirs = dirs
        return torch.tensor(BACKGROUND, device=dirs.device).expand(*dirs.shape[:-1], 3)


def views(azimuth_deg: list[float], elevation_deg: list[float]) -> dict[str, Any]:
    n = len(azimuth_deg)
    elevation = torch.tensor(elevation_deg) * cam.DEG
    azimuth = torch.tensor(azimuth_deg) * cam.DEG
    position = cam.spherical_to_position(elevation, azimuth, torch.full((n,), DISTANCE))
    c2w = cam.look_at(position, torch.zeros(n, 3), torch.tensor([0.0, 0.0, 1.0]))
    fovy = torch.full((n,), FOVY * cam.DEG)
    directions = cam.ray_directions(SIZE, SIZE, cam.focal_from_fovy(SIZE, fovy[0]))
    rays_o, rays_d = cam.world_rays(directions[None].expand(n, -1, -1, -1), c2w)
    return {
        "mvp_mtx": cam.mvp_matrix(c2w, cam.projection_matrix(fovy, 1.0)),
        "camera_positions": position,
        "light_positions": position * 1.5 + torch.tensor([0.0, 0.0, 1.0]),
        "height": SIZE,
        "width": SIZE,
        "rays_o": rays_o,
        "rays_d": rays_d,
    }


def analytic_sphere(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel ray hits of the exact sphere: ``(hit mask, hit points, cos(ray, normal))``."""
    o, d = batch["rays_o"].double(), batch["rays_d"].double()
    b = (o * d).sum(-1)
    disc = b**2 - ((o * o).sum(-1) - RADIUS**2)
    hit = disc > 0
    t = -b - disc.clamp(min=0).sqrt()
    point = o + t[..., None] * d
    cos = -(F.normalize(point, dim=-1) * d).sum(-1)
    return hit, point, cos


def make_renderer(geometry: torch.nn.Module, **cfg: Any) -> NVDiffRasterizer:
    return NVDiffRasterizer(
        {"backend": "torch", **cfg},
        geometry=geometry,
        material=RecordingMaterial(),
        background=Constant(),
    )


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


def test_silhouette_normals_and_colours_match_the_analytic_sphere() -> None:
    batch = views([0.0, 130.0], [10.0, -35.0])
    renderer = make_renderer(SphereGeometry())
    out = renderer(**batch)
    for key in ("opacity", "comp_normal", "comp_rgb", "comp_rgb_bg"):
        assert out[key].shape[:3] == (2, SIZE, SIZE)
    assert out["opacity"].shape[-1] == 1 and out["comp_normal"].shape[-1] == 3
    hit, point, cos = analytic_sphere(batch)
    covered = out["opacity"][..., 0] > 0.5
    assert iou(covered, hit) > 0.98

    frontal = covered & hit & (cos > 0.3)
    normal = out["comp_normal"] * 2 - 1
    angle = torch.acos((normal.double() * F.normalize(point, dim=-1)).sum(-1).clamp(-1, 1))
    assert angle[frontal].max() < 2.0 * cam.DEG
    assert ((normal * -batch["rays_d"]).sum(-1)[covered] > 0).float().mean() > 0.99
    empty = out["opacity"][..., 0] == 0  # untouched by the mesh and by the edge antialias
    assert (out["comp_normal"][empty] == 0).all()

    # colour = (surface point + 1) / 2 over a solid background, composited by the mask
    expected = (point + 1) / 2
    assert (out["comp_rgb"][frontal].double() - expected[frontal]).abs().max() < 1e-2
    assert torch.equal(out["comp_rgb"][empty], torch.tensor(BACKGROUND).expand(int(empty.sum()), 3))
    assert torch.equal(out["comp_rgb_bg"], torch.tensor(BACKGROUND).expand(2, SIZE, SIZE, 3))


def test_material_inputs() -> None:
    batch = views([45.0], [20.0])
    renderer = make_renderer(SphereGeometry())
    out = renderer(**batch, ambient_ratio=0.3, unrelated="ignored")
    seen = renderer.material.seen
    covered = out["opacity"][0, ..., 0] > 0
    n = int(covered.sum())
    assert seen["features"].shape == (n, 3) and seen["positions"].shape == (n, 3)
    assert seen["ambient_ratio"] == 0.3 and "unrelated" not in seen
    assert torch.allclose(seen["shading_normal"].norm(dim=-1), torch.ones(n), atol=1e-5)
    assert torch.allclose(seen["light_positions"], batch["light_positions"][0].expand(n, 3))
    to_points = F.normalize(seen["positions"] - batch["camera_positions"][0], dim=-1)
    assert torch.allclose(seen["viewdirs"], to_points, atol=1e-6)
    # the positions are on the sphere's surface, seen along the pixel rays
    assert ((seen["positions"].norm(dim=-1) - RADIUS).abs() < 0.01).all()
    assert (
        F.cosine_similarity(seen["viewdirs"], batch["rays_d"][0][covered], dim=-1) > 0.9999
    ).all()


class TangentMaterial(RecordingMaterial):
    requires_tangent = True


class CachedSphere(SphereGeometry):
    """One mesh object for every call (as a fixed geometry's cached mesh)."""

    def __init__(self) -> None:
        super().__init__()
        self.mesh = Mesh(self.v_pos, self.faces)

    def isosurface(self) -> Mesh:
        return self.mesh


def test_a_tangent_material_gets_the_uv_tangent_frame_of_the_visible_points() -> None:
    geometry = CachedSphere()
    renderer = NVDiffRasterizer(
        {"backend": "torch"}, geometry=geometry, material=TangentMaterial(), background=Constant()
    )
    assert not geometry.mesh.has_uv
    renderer(**views([30.0], [15.0]))
    mesh = geometry.mesh
    assert mesh.has_uv  # unwrapped once, on the mesh object the geometry keeps
    atlas = mesh.t_tex_idx
    renderer(**views([200.0], [-20.0]))
    assert mesh.t_tex_idx is atlas
    seen = renderer.material.seen
    n = len(seen["features"])
    assert seen["tangent"].shape == (n, 3) and seen["tangent_sign"].shape == (n, 1)
    assert set(seen["tangent_sign"].unique().tolist()) <= {-1.0, 1.0}
    assert torch.allclose(seen["tangent"].norm(dim=-1), torch.ones(n), atol=1e-5)
    # interpolated vertex tangents: nearly perpendicular to the interpolated normals
    cos = (seen["tangent"] * F.normalize(seen["shading_normal"], dim=-1)).sum(-1).abs()
    assert cos.median() < 0.05


def test_no_rgb_pass_and_empty_views() -> None:
    geometry = SphereGeometry()
    renderer = make_renderer(geometry)
    out = renderer(**views([0.0], [0.0]), render_rgb=False)
    assert "comp_rgb" not in out and geometry.calls == 0 and out["opacity"].sum() > 100
    far_away = SphereGeometry(SphereGeometry().v_pos + 50.0)
    empty = make_renderer(far_away)(**views([0.0], [0.0]))
    assert far_away.calls == 0 and empty["opacity"].sum() == 0
    assert torch.equal(empty["comp_rgb"], empty["comp_rgb_bg"])


def test_gradients_reach_features_and_vertices() -> None:
    v_pos = torch.tensor(trimesh.creation.icosphere(3, radius=RADIUS).vertices).float()
    v_pos.requires_grad_(True)
    geometry = SphereGeometry(v_pos)
    out = make_renderer(geometry)(**views([10.0], [5.0]))
    out["comp_rgb"].sum().backward()
    assert geometry.scale.grad is not None and (geometry.scale.grad > 0).all()
    assert (
        v_pos.grad is not None and torch.isfinite(v_pos.grad).all() and v_pos.grad.abs().sum() > 0
    )


def test_config_and_registration(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        renderer = make_renderer(SphereGeometry(), context_type="gl")
    assert "context_type=gl" in caplog.text and renderer.cfg.context_type == "gl"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="rasterizer backend 'nvdiffrast'"):
            make_renderer(SphereGeometry(), backend="nvdiffrast")
    with pytest.raises(ConfigError):
        make_renderer(SphereGeometry(), context_type="vulkan")
    registration = discover().get("renderer", "nvdiff-rasterizer")
    assert registration.target == "studio.renderers.nvdiff_rasterizer:NVDiffRasterizer"
    assert math.isclose(renderer.bbox[1, 0].item(), 1.0)
