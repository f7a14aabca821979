"""``isosurface_threshold: auto``: the level whose mesh looks like the volume from outside.

A density field has no natural surface level: threestudio's users hand-tune it (25 by default) and
get meshes that are fatter or thinner than the renders. Here the level is *measured*: the field is
sampled once on a grid, candidate levels are spread over the quantiles of the sampled values, and
each candidate's marching-cubes mesh is rasterized from a few orbit views and compared with the
volume renderer's opacity from the same views. The score is the soft IoU
``sum(min(coverage, opacity)) / sum(max(coverage, opacity))`` averaged over views; the best level
is refined once between its neighbours.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from studio.data import cameras as cam
from studio.errors import StudioError
from studio.mesh.isosurface import evaluate_chunked, get_helper
from studio.mesh.mesh import Mesh

log = logging.getLogger(__name__)

OpacityFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]
#: ``progress(stage, done, total)`` of the search: ``stage`` is ``"views"`` (rendering the volume's
#: opacity, the slow part on a CPU) or ``"levels"`` (scoring candidate levels); ``done`` steps of
#: that stage out of at most ``total``.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class ThresholdChoice:
    """The chosen level, its silhouette score and every candidate that was scored."""

    threshold: float
    score: float
    tried: list[tuple[float, float]] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"isosurface_threshold auto -> {self.threshold:.6g} (mean silhouette IoU "
            f"{self.score:.4f} against the volume's opacity over {len(self.tried)} candidates)"
        )


def orbit_views(
    n_views: int,
    size: int,
    radius: float,
    *,
    fovy_deg: float = 40.0,
    elevations_deg: tuple[float, ...] = (15.0, -10.0, 40.0),
    device: torch.device | str = "cpu",
) -> list[dict[str, torch.Tensor]]:
    """Camera batches (batch 1) on an orbit that sees the whole ``[-radius, radius]^3`` box."""
    distance = radius * math.sqrt(3.0) / math.sin(math.radians(fovy_deg) / 2) * 1.02
    views = []
    for i in range(n_views):
        azimuth = torch.tensor([i * 360.0 / n_views]) * cam.DEG
        elevation = torch.tensor([elevations_deg[i % len(elevations_deg)]]) * cam.DEG
        position = cam.spherical_to_position(elevation, azimuth, torch.tensor([distance]))
        c2w = cam.look_at(position, torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
        fovy = torch.tensor([fovy_deg]) * cam.DEG
        focal = cam.focal_from_fovy(size, fovy)
        dirs = cam.ray_directions(size, size, 1.0)[None]
        dirs[..., :2] = dirs[..., :2] / focal[:, None, None, None]
        rays_o, rays_d = cam.world_rays(dirs, c2w)
        proj = cam.projection_matrix(fovy, 1.0)
        batch = {
            "rays_o": rays_o,
            "rays_d": rays_d,
            "c2w": c2w,
            "mvp_mtx": cam.mvp_matrix(c2w, proj),
            "camera_positions": position,
            "light_positions": position,
            "height": size,
            "width": size,
        }
        views.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
    return views


def mesh_coverage(mesh: Mesh, views: list[dict[str, torch.Tensor]], rasterizer) -> torch.Tensor:
    """Binary silhouettes ``[n_views, H, W]`` of ``mesh`` (world coordinates), one batched call."""
    tri = mesh.t_pos_idx.to(torch.int32)
    homogeneous = torch.cat([mesh.v_pos, torch.ones_like(mesh.v_pos[:, :1])], dim=-1)
    mvp = torch.cat([view["mvp_mtx"] for view in views]).to(homogeneous)
    clip = homogeneous[None] @ mvp.transpose(1, 2)
    size = (views[0]["height"], views[0]["width"])
    return (rasterizer.rasterize(clip, tri, size)[..., 3] > 0).float()


def silhouette_iou(coverage: torch.Tensor, opacity: torch.Tensor) -> float:
    """Mean over views of the soft IoU between binary coverage and opacity in [0, 1]."""
    inter = torch.minimum(coverage, opacity).flatten(1).sum(-1)
    union = torch.maximum(coverage, opacity).flatten(1).sum(-1).clamp(min=1e-6)
    return float((inter / union).mean())


def _field_on_grid(geometry, resolution: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    helper = get_helper("mc-cpu", resolution)
    unit = helper.grid_vertices.to(geometry.bbox.device)
    lo, hi = geometry.bbox[0], geometry.bbox[1]
    with torch.no_grad():
        values = evaluate_chunked(geometry.forward_field, lo + unit * (hi - lo), chunk)
    return values.reshape(-1, 1), helper


def _quantile_candidates(values: torch.Tensor, n: int) -> list[float]:
    """Levels at quantiles ``1 - q`` log-spaced in [5e-4, 0.5] of the sampled field values."""
    tails = torch.logspace(math.log10(0.5), math.log10(5e-4), n, dtype=torch.float64)
    flat = values.flatten().double().cpu()
    if flat.numel() > 2_000_000:  # torch.quantile's size limit; a strided subsample is enough
        flat = flat[:: flat.numel() // 2_000_000 + 1]
    levels = torch.quantile(flat, 1.0 - tails)
    return sorted({float(v) for v in levels})


def choose_isosurface_threshold(
    geometry,
    render_opacity: OpacityFn,
    rasterizer,
    *,
    n_views: int = 6,
    view_size: int = 128,
    resolution: int = 96,
    n_candidates: int = 14,
    n_refine: int = 6,
    chunk: int = 262144,
    progress: ProgressFn | None = None,
) -> ThresholdChoice:
    """Pick the level of ``geometry``'s field that best matches ``render_opacity`` silhouettes.

    ``render_opacity(view)`` returns the volume's opacity ``[1, H, W, 1]`` for a camera batch of
    :func:`orbit_views`. Raises :class:`StudioError` when the field has no surface at any level.
    ``progress`` (optional, :data:`ProgressFn`) is called after every rendered view and scored
    level, and with ``done == total`` when a stage ends.
    """

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, min(done, total), total)

    device = geometry.bbox.device
    radius = float(geometry.bbox[1].abs().max())
    views = orbit_views(n_views, view_size, radius, device=device)
    rendered = []
    with torch.no_grad():
        for view in views:
            rendered.append(render_opacity(view)[0, ..., 0].float().clamp(0.0, 1.0))
            report("views", len(rendered), n_views)
    opacity = torch.stack(rendered)
    if float(opacity.max()) < 0.05:
        raise StudioError(
            "isosurface_threshold=auto: the volume renders empty from every orbit view (max "
            f"opacity {float(opacity.max()):.3g}), so there is no surface to match. Was the run "
            "trained? Set system.geometry.isosurface_threshold to a number to export anyway."
        )
    values, helper = _field_on_grid(geometry, resolution, chunk)
    lo, hi = geometry.bbox[0], geometry.bbox[1]
    tried: dict[float, float] = {}

    def score(threshold: float) -> float:
        if threshold not in tried:
            level = geometry.forward_level(values, threshold)
            mesh = helper(level.to(helper.grid_vertices.device))
            if mesh.n_faces == 0:
                tried[threshold] = 0.0
            else:
                world = Mesh(lo + mesh.v_pos.to(device) * (hi - lo), mesh.t_pos_idx.to(device))
                tried[threshold] = silhouette_iou(mesh_coverage(world, views, rasterizer), opacity)
        scored[0] += 1
        report("levels", scored[0], levels)
        return tried[threshold]

    candidates = _quantile_candidates(values, n_candidates)
    scored, levels = [0], len(candidates) + n_refine
    scores = [score(t) for t in candidates]
    best = max(range(len(candidates)), key=scores.__getitem__)
    left = candidates[max(best - 1, 0)]
    right = candidates[min(best + 1, len(candidates) - 1)]
    for t in torch.linspace(left, right, n_refine + 2)[1:-1].tolist():
        score(t)
    threshold, best_score = max(tried.items(), key=lambda item: item[1])
    if best_score <= 0.0:
        raise StudioError(
            "isosurface_threshold=auto: no level of the field produced a surface (field values "
            f"{float(values.min()):.4g}..{float(values.max()):.4g}); set "
            "system.geometry.isosurface_threshold to a number within that range."
        )
    choice = ThresholdChoice(threshold, best_score, sorted(tried.items()))
    log.info(choice.describe())
    report("levels", levels, levels)
    return choice


def silhouette_threshold(
    system: Any,
    *,
    rasterizer_backend: str = "auto",
    n_views: int = 6,
    view_size: int = 128,
    resolution: int = 96,
    progress: ProgressFn | None = None,
) -> ThresholdChoice:
    """:func:`choose_isosurface_threshold` for a lift-3D ``system``: its geometry's field against
    its renderer's opacity (the renderer in eval mode while it renders). The exporter and geometry
    conversion both resolve ``isosurface_threshold: auto`` through this."""
    from studio.rasterize import make_rasterizer

    renderer = system.renderer
    was_training = renderer.training
    renderer.eval()

    def opacity(view: dict[str, torch.Tensor]) -> torch.Tensor:
        return renderer(**view)["opacity"]

    try:
        return choose_isosurface_threshold(
            system.geometry,
            opacity,
            make_rasterizer(rasterizer_backend, system.geometry.bbox.device),
            n_views=n_views,
            view_size=view_size,
            resolution=resolution,
            progress=progress,
        )
    finally:
        renderer.train(was_training)
