"""The texture stage's glb export, rendered again by our rasterizer with the same PBR shading,
matches the texture stage's own renders from views it was not trained on (PSNR >= 25 dB)."""

from __future__ import annotations

import math

import pytest
import torch

from studio.data.random_camera import RandomCameraDataModule
from studio.exporters.mesh_exporter import MeshExporter
from studio.rasterize import make_rasterizer
from studio_fantasia3d.glb_preview import load_pbr_glb, render_pbr_asset
from tests.plugins.fantasia3d.test_system import texture_system


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10.0 * math.log10(float(((a - b) ** 2).mean()))


@pytest.mark.slow
def test_the_exported_glb_renders_like_the_texture_stage(tmp_path) -> None:
    system, _ = texture_system("system.geometry.isosurface_resolution=24")
    optimizer = torch.optim.Adam(system.geometry.parameters(), lr=0.03)
    data = RandomCameraDataModule(dict(system_data(), width=32, height=32))
    for _ in range(10):  # a few steps, so the features are no longer the initial ones
        loss = system.training_step(data.train_batch())["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    exporter = MeshExporter({"fmt": "glb", "texture_size": 512, "rasterizer_backend": "torch"})
    with torch.no_grad():
        (glb,) = [p for p in exporter.export(system, tmp_path) if p.suffix == ".glb"]
    asset = load_pbr_glb(glb)
    assert asset.base_color.shape == (512, 512, 3)

    torch.manual_seed(123)  # other cameras than the training steps'
    held_out = RandomCameraDataModule(dict(system_data(), width=64, height=64))
    rasterizer = make_rasterizer("torch", torch.device("cpu"))
    background = torch.tensor(system.background.cfg.color, dtype=torch.float32)
    scores = []
    for _ in range(4):
        batch = held_out.train_batch()
        with torch.no_grad():
            trained = system.renderer(**batch)["comp_rgb"]
            exported = render_pbr_asset(
                asset,
                system.material,
                rasterizer,
                batch["mvp_mtx"],
                batch["camera_positions"],
                64,
                64,
                background,
            )
        scores.append(psnr(trained, exported))
    print(f"glb re-rendered vs the texture stage: PSNR {[round(s, 2) for s in scores]} dB")
    assert min(scores) >= 25.0


def system_data() -> dict:
    from studio.config.resolve import load_experiment

    parsed = load_experiment(
        "fantasia3d-texture-primitives", ["system.geometry_convert_from="], prompt="a red cube"
    ).parsed
    return dict(parsed["data"])
