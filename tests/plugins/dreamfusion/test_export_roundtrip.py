"""Export round trip: a NeRF fitted to the analytic spheres is exported (obj-mtl, glb, vertex-colour
obj), reloaded with trimesh and re-rendered with our rasterizer from held-out views. The mesh must
match what the NeRF renders: silhouette IoU against the NeRF's opacity and colour PSNR on the
pixels both cover. ``isosurface_threshold: auto`` must do at least as well as the fixed default."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from studio.data import cameras as cam
from studio.exporters.base import export_atomically
from studio.exporters.mesh_exporter import MeshExporter
from studio.rasterize import make_rasterizer
from studio_dreamfusion.materials import NoMaterial
from tests.plugins.dreamfusion.scene import orbit_cameras, render_flat
from tests.plugins.dreamfusion.test_nerf_fit import build, fit, render_views

SIZE = 48
FOVY = 40.0
DISTANCE = 2.5


def held_out_views():
    views = orbit_cameras(
        6, SIZE, SIZE, distance=DISTANCE, fovy_deg=FOVY, azimuth_offset=30.0, elevations=(5.0, 25.0)
    )
    n = views["rays_o"].shape[0]
    c2w = cam.look_at(
        views["camera_positions"], torch.zeros(n, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3)
    )
    views["mvp_mtx"] = cam.mvp_matrix(
        c2w, cam.projection_matrix(torch.full((n,), FOVY * cam.DEG), 1.0)
    )
    return views


@pytest.fixture(scope="module")
def fitted():
    """A NeRF (flat colours through no-material) fitted to the coloured spheres; eval renders."""
    torch.manual_seed(0)
    train = orbit_cameras(24, 32, 32)
    targets = render_flat(train["rays_o"], train["rays_d"])
    material = NoMaterial({"n_output_dims": 3, "color_activation": "sigmoid"})
    geometry, renderer = build(material, "finite_difference", n_features=3)
    fit(renderer, [*geometry.parameters(), *material.parameters()], train, targets, steps=300)
    views = held_out_views()
    outs = render_views(renderer, views)
    nerf = {
        "rgb": torch.cat([o["comp_rgb"] for o in outs]),
        "opacity": torch.cat([o["opacity"] for o in outs])[..., 0],
    }
    system = SimpleNamespace(geometry=geometry, material=material, renderer=renderer)
    return system, views, nerf


def load_single_mesh(path) -> trimesh.Trimesh:
    loaded = trimesh.load(path, process=False)
    if isinstance(loaded, trimesh.Scene):
        (loaded,) = loaded.geometry.values()
    return loaded


def render_mesh(tm: trimesh.Trimesh, views) -> tuple[torch.Tensor, torch.Tensor]:
    """Our rasterizer on the reloaded mesh: ``(rgb on white [N,H,W,3], coverage [N,H,W])``.

    Colours come from the texture (trimesh UV convention: row ``(1 - v) * H`` from the top) or
    from the vertex colours."""
    rasterizer = make_rasterizer("torch")
    v = torch.tensor(np.asarray(tm.vertices), dtype=torch.float32)
    tri = torch.tensor(np.asarray(tm.faces), dtype=torch.int32)
    clip = torch.cat([v, torch.ones_like(v[:, :1])], -1) @ views["mvp_mtx"].transpose(1, 2)
    rast = rasterizer.rasterize(clip, tri, (SIZE, SIZE))
    mask = rast[..., 3] > 0
    visual = tm.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        uv = torch.tensor(np.asarray(visual.uv), dtype=torch.float32)
        material = visual.material
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        texture = torch.tensor(np.asarray(image.convert("RGB")), dtype=torch.float32) / 255.0
        uv_px = rasterizer.interpolate(uv, rast, tri)
        grid = torch.stack([uv_px[..., 0] * 2 - 1, (1 - uv_px[..., 1]) * 2 - 1], -1)
        tex = texture.permute(2, 0, 1)[None].expand(len(grid), -1, -1, -1)
        color = F.grid_sample(tex, grid, align_corners=False, mode="bilinear").permute(0, 2, 3, 1)
    else:
        colors = torch.tensor(np.asarray(visual.vertex_colors)[:, :3], dtype=torch.float32) / 255
        color = rasterizer.interpolate(colors, rast, tri)
    white = torch.ones_like(color)
    return torch.where(mask[..., None], color, white), mask.float()


def silhouette_iou(mask: torch.Tensor, opacity: torch.Tensor) -> float:
    nerf = opacity > 0.5
    hit = mask > 0.5
    return float((hit & nerf).sum() / (hit | nerf).sum())


def foreground_psnr(rgb: torch.Tensor, mask: torch.Tensor, nerf) -> float:
    both = (mask > 0.5) & (nerf["opacity"] > 0.5)
    mse = F.mse_loss(rgb[both], nerf["rgb"][both].clamp(0, 1)).item()
    return -10 * math.log10(max(mse, 1e-12))


def export(system, tmp_path, name, **cfg):
    defaults = {"texture_size": 512, "rasterizer_backend": "torch", "auto_threshold_view_size": 64}
    exporter = MeshExporter({**defaults, **cfg})
    return export_atomically(exporter, system, tmp_path / name)


def geometry_settings(system, threshold):
    system.geometry.cfg.isosurface_method = "mc-cpu"
    system.geometry.cfg.isosurface_resolution = 96
    system.geometry.cfg.isosurface_threshold = threshold
    system.geometry.set_isosurface_threshold(None)


@pytest.fixture(scope="module")
def exported_with_default_and_auto(fitted, tmp_path_factory):
    """Exports at the fixed default threshold and at ``auto``, their scores: obj-mtl at ``auto``;
    at the default only its silhouette is compared, so a vertex-colour obj (no atlas, no bake)."""
    system, views, nerf = fitted
    out = tmp_path_factory.mktemp("exports")
    default_threshold = type(system.geometry.cfg)().isosurface_threshold  # the reference's 25.0
    scores = {}
    for label, threshold, fmt in (
        ("default", default_threshold, "obj"),
        ("auto", "auto", "obj-mtl"),
    ):
        geometry_settings(system, threshold)
        written = export(system, out, label, fmt=fmt)
        obj = next(p for p in written if p.suffix == ".obj")
        rgb, mask = render_mesh(load_single_mesh(obj), views)
        scores[label] = (silhouette_iou(mask, nerf["opacity"]), foreground_psnr(rgb, mask, nerf))
        print(f"{label} threshold: IoU {scores[label][0]:.4f}, PSNR {scores[label][1]:.2f} dB")
    chosen = float((out / "auto" / "threshold.txt").read_text().split("->")[1].split()[0])
    return scores, chosen


@pytest.mark.slow
def test_auto_threshold_obj_mtl_matches_the_nerf(exported_with_default_and_auto):
    scores, chosen = exported_with_default_and_auto
    print(f"auto chose {chosen:.4g}")
    assert scores["auto"][0] >= 0.9
    assert scores["auto"][1] >= 20.0
    assert scores["auto"][0] >= scores["default"][0] - 1e-3


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt, options",
    # the vertex-colour glb without UVs: the atlas (17 s of xatlas) is the textured glb's
    [("glb", {}), ("obj", {}), ("glb", {"save_texture": False, "save_uv": False})],
    ids=["glb-texture", "obj-vertex-colour", "glb-vertex-colour"],
)
def test_other_formats_match_the_nerf(
    fitted, exported_with_default_and_auto, tmp_path, fmt, options
):
    """At the level ``auto`` chose (the search itself is covered above)."""
    system, views, nerf = fitted
    geometry_settings(system, exported_with_default_and_auto[1])
    written = export(system, tmp_path, "export", fmt=fmt, **options)
    mesh_file = next(p for p in written if p.suffix in (".glb", ".obj"))
    rgb, mask = render_mesh(load_single_mesh(mesh_file), views)
    iou, psnr = silhouette_iou(mask, nerf["opacity"]), foreground_psnr(rgb, mask, nerf)
    print(f"{fmt} {options}: IoU {iou:.4f}, PSNR {psnr:.2f} dB")
    assert iou >= 0.9
    assert psnr >= 20.0


@pytest.mark.slow
def test_export_prints_each_phase_with_its_duration(fitted, tmp_path, capfd):
    """One stderr line per phase as it ends (``studio export`` prints them on rank 0), and a
    progress bar per stage of the threshold search while it runs."""
    system, _, _ = fitted
    geometry_settings(system, "auto")
    system.geometry.cfg.isosurface_resolution = 48
    options = {"texture_size": 64, "auto_threshold_view_size": 32, "auto_threshold_resolution": 48}
    export(system, tmp_path, "phases", fmt="obj-mtl", **options)
    err = capfd.readouterr().err.replace("\r", "\n")
    phases = [line for line in err.splitlines() if re.search(r" \(\d+\.\d s\)$", line)]
    expected = [
        r"export: isosurface_threshold auto -> \S+ \(mean silhouette IoU [\d.]+ against the "
        r"volume's opacity over \d+ candidates\); [\d.]+ s of it rendering 6 views 32x32",
        r"export: isosurface \(mc-cpu, grid 48\): \d+ vertices, \d+ faces",
        r"export: uv atlas \d+ faces -> \d+ uv vertices \(xatlas\)",
        r"export: texture 64x64 baked",
        r"export: wrote model\.obj, model\.mtl, texture_kd\.jpg",
    ]
    assert len(phases) == len(expected), err
    for line, pattern in zip(phases, expected, strict=True):
        assert re.fullmatch(pattern + r" \(\d+\.\d s\)", line), line
    for stage in ("views", "levels"):
        assert re.search(rf"^export: isosurface threshold auto: {stage}: +\d+%\|", err, re.M), err
