"""Core's conversion contract end to end: ``system.geometry_convert_from=RUN`` of a DreamFusion run
(an implicit volume fitted to a sphere) into ``tetrahedra-sdf-grid``, with the source's ``auto``
threshold resolved as the mesh exporter resolves it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from studio.config.resolve import load_experiment
from studio.exporters.mesh_exporter import MeshExporter
from studio.geometry.convert import convert_geometry, load_source_system
from studio.training.checkpoint import save_checkpoint
from studio_dreamfusion.system import DreamFusionSystem
from studio_magic3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid
from tests.plugins.magic3d.geometry.test_tetrahedra_sdf_grid_conversion import (
    CENTRE,
    MLP,
    RADIUS,
    chamfer,
    colours,
    sphere_density,
)

RES = 32
BOX_SIDE = 2.0


@pytest.fixture(scope="module")
def sphere_run(tmp_path_factory) -> Path:
    """A run directory (configs/parsed.yaml + ckpts/last.ckpt) of ``dreamfusion-primitives`` whose
    volume was fitted directly to an off-centre sphere."""
    resolved = load_experiment("dreamfusion-primitives", [], prompt="a red sphere")
    parsed = resolved.parsed
    torch.manual_seed(0)
    system = DreamFusionSystem(parsed["system"], resumed=True)
    geometry = system.geometry
    optimizer = torch.optim.Adam(geometry.parameters(), lr=2e-2)
    for _ in range(150):
        points = torch.cat([torch.rand(2048, 3) * 2 - 1, (CENTRE + 0.3 * torch.randn(2048, 3))])
        points = points.clamp(-1, 1)
        out = geometry(points)
        loss = (out["density"] - sphere_density(points)).square().mean() / 100.0
        loss = loss + (out["features"] - colours(points)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    root = tmp_path_factory.mktemp("sphere-run")
    (root / "configs").mkdir()
    (root / "configs" / "parsed.yaml").write_text(yaml.safe_dump(parsed))
    save_checkpoint(
        root / "ckpts" / "last.ckpt", {"global_step": 150, "state_dict": system.state_dict()}
    )
    return root


def target_config() -> dict:
    return {"isosurface_resolution": RES, "mlp_network_config": MLP}


def convert(source: str, override: dict | None = None):
    """``(geometry, record)`` of ``target_config()`` converted from ``source`` on the CPU."""
    return convert_geometry(
        TetrahedraSDFGrid,
        target_config(),
        source=source,
        inherit_texture=False,
        override=override or {},
        device=torch.device("cpu"),
        config_path="system.geometry",
    )


@pytest.mark.slow
def test_auto_threshold_is_the_exporters_and_the_surface_is_kept(sphere_run, tmp_path):
    geometry, record = convert(str(sphere_run))
    assert record.parent == str(sphere_run) and record.step == 150
    assert record.source_method == "dreamfusion-primitives"
    assert record.source_geometry == "ImplicitVolume"
    assert record.threshold_rule.startswith("isosurface_threshold auto ->")

    # the exporter, on the same run, picks the same level
    source, *_ = load_source_system(str(sphere_run), {}, torch.device("cpu"))
    exported = MeshExporter({}).resolve_auto_threshold(source, tmp_path)
    assert record.threshold == pytest.approx(exported, rel=1e-6)

    # the converted surface is the source's isosurface at that level (Chamfer < 1% of the box)
    with torch.no_grad():
        reference = source.geometry.isosurface()  # mc-cpu at the stored auto level
        converted = geometry.isosurface()
    distance = chamfer(converted.v_pos, reference.v_pos) / BOX_SIDE
    assert distance < 0.01, f"Chamfer {distance:.4%} of the box"
    # the fitted density falls by 100 per unit from 25 at the sphere: the level t is the sphere of
    # radius RADIUS + (25 - t) / 100 (auto picks the volume's visible rim, outside the 25 shell)
    radius = (converted.v_pos - CENTRE).norm(dim=-1)
    expected = RADIUS + (25.0 - record.threshold) / 100.0
    assert abs(float(radius.mean()) - expected) < 0.02, (float(radius.mean()), expected)


def test_an_overridden_threshold_is_used_and_recorded(sphere_run):
    _, record = convert(str(sphere_run / "ckpts" / "last.ckpt"), {"isosurface_threshold": 10.0})
    assert record.threshold == 10.0 and record.threshold_rule == "configured"
    assert record.checkpoint == str(sphere_run / "ckpts" / "last.ckpt")


@pytest.mark.slow
def test_the_converted_grid_keeps_the_nerfs_silhouette_from_held_out_views(sphere_run):
    """The Magic3D acceptance: IoU >= 0.9 between the converted DMTet's rasterized silhouette and
    the source NeRF's rendered opacity (> 0.5), from views the auto threshold never saw."""
    from studio.mesh.auto_threshold import mesh_coverage, orbit_views
    from studio.rasterize.torch_backend import TorchRasterizer
    from tests.core.rasterize.reference import iou

    geometry, _ = convert(str(sphere_run))
    source, *_ = load_source_system(str(sphere_run), {}, torch.device("cpu"))
    source.renderer.eval()
    views = orbit_views(5, 96, 1.0, elevations_deg=(25.0, 0.0, 55.0, -5.0, 35.0))
    with torch.no_grad():
        opacity = torch.cat([source.renderer(**view)["opacity"][..., 0] for view in views])
        coverage = mesh_coverage(geometry.isosurface(), views, TorchRasterizer())
    scores = [iou(coverage[i] > 0.5, opacity[i] > 0.5) for i in range(len(views))]
    print(
        f"\nconverted DMTet vs NeRF opacity, held-out silhouette IoU: {[f'{s:.3f}' for s in scores]}"
    )
    assert min(scores) >= 0.9, scores
