"""``studio run dreamfusion-sd`` / ``dreamfusion-if`` / ``sds-2d`` end to end on tiny random models
(CPU): training steps, validation grids, the test video; ``studio export`` without the model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from studio.cli.app import app
from studio.io.images import read_video

TINY_RUN = [
    "data.width=16",  # the guidance resizes renders to the tiny models' 32x32
    "data.height=16",
    "data.eval_width=32",
    "data.eval_height=32",
    "data.n_val_views=2",
    "data.n_test_views=4",
    "system.geometry.pos_encoding_config.n_levels=4",
    "system.geometry.pos_encoding_config.log2_hashmap_size=12",
    "system.geometry.pos_encoding_config.start_level=2",
    "system.geometry.pos_encoding_config.start_step=5",
    "system.geometry.pos_encoding_config.update_steps=5",
    "system.geometry.isosurface_method=mc-cpu",
    "system.geometry.isosurface_resolution=32",
    "system.material.ambient_only_steps=5",
    "system.renderer.num_samples_per_ray=16",
    "trainer.max_steps=20",
    "trainer.val_check_interval=10",
    "trainer.enable_progress_bar=false",
    "trainer.precision=32",
]


def run_cli(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def only_run_dir(root: Path) -> Path:
    (name_dir,) = root.iterdir()
    (run_dir,) = name_dir.iterdir()
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dreamfusion-sd", "dreamfusion-if"])
def test_dreamfusion_trains_20_steps_and_exports_without_the_model(
    method, tiny_sd_model, tiny_if_model, studio_cache_dir, tmp_path
):
    torch.manual_seed(0)
    model = shutil.copytree(
        tiny_sd_model if method.endswith("sd") else tiny_if_model, tmp_path / "m"
    )
    out = tmp_path / "out"
    started = time.perf_counter()
    run_cli(
        [
            "run",
            method,
            "prompt=a red chair",
            f"exp_root_dir={out}",
            f"system.prompt_processor.pretrained_model_name_or_path={model}",
            f"system.guidance.pretrained_model_name_or_path={model}",
            *TINY_RUN,
        ]
    )
    print(f"{method}: 20 steps + validation + test in {time.perf_counter() - started:.1f} s")
    run_dir = only_run_dir(out)
    save = run_dir / "save"
    for step in (10, 20):
        for view in (0, 1):
            grid = iio.imread(save / f"it{step}-{view}.png")
            assert grid.shape == (32, 96, 3)  # rgb | normal | opacity
    video = read_video(save / "it20-test.mp4")
    assert video.shape[:3] == (4, 32, 96)
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert "train/loss_sds" in header and "train/guidance/grad_norm" in header
    assert len(metrics) == 21  # header + one row per step
    ckpt = torch.load(run_dir / "ckpts" / "last.ckpt", weights_only=True)
    assert not any(k.startswith("guidance") for k in ckpt["state_dict"])  # never checkpointed

    if method != "dreamfusion-sd":
        return
    shutil.rmtree(model)  # export must not need the guidance model (nor its text encoder)
    run_cli(
        [
            "export",
            str(run_dir),
            "system.exporter.fmt=obj",
            "system.geometry.isosurface_threshold=auto",
        ]
    )
    (export_dir,) = save.glob("it20-export")
    mesh = trimesh.load(export_dir / "model.obj", process=False)
    mesh_bytes = (export_dir / "model.obj").read_bytes()
    assert len(mesh.faces) > 0
    assert (export_dir / "threshold.txt").exists()

    # a level no density reaches: one clear paragraph, exit 2, the previous export untouched
    result = CliRunner().invoke(
        app, ["export", str(run_dir), "system.geometry.isosurface_threshold=1000000"]
    )
    assert result.exit_code == 2, result.output
    assert "1e+06" in result.output or "1000000" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in save.iterdir() if "export" in p.name) == ["it20-export"]
    assert (export_dir / "model.obj").read_bytes() == mesh_bytes


@pytest.mark.slow
def test_sds_2d_playground_writes_frames_and_a_video(tiny_sd_model, studio_cache_dir, tmp_path):
    out = tmp_path / "out"
    run_cli(
        [
            "run",
            "sds-2d",
            "prompt=a blue cat",
            f"exp_root_dir={out}",
            f"system.prompt_processor.pretrained_model_name_or_path={tiny_sd_model}",
            "system.height=16",
            "system.width=16",
            "trainer.max_steps=12",
            "trainer.val_check_interval=6",
            "trainer.enable_progress_bar=false",
        ]
    )
    save = only_run_dir(out) / "save"
    frames = sorted(int(p.stem) for p in (save / "frames").glob("*.png"))
    assert frames == [0, 5, 10]
    decoded = iio.imread(save / "frames" / "0.png")
    assert decoded.shape == (32, 32, 3)  # 16x16 latents decoded by the tiny VAE (factor 2)
    video = read_video(save / "it12-progress.mp4")
    assert video.shape[0] == 3
    assert iio.imread(save / "it12-test" / "0.png").shape == (32, 32, 3)


def test_dreamfusion_without_a_cached_model_fails_with_the_documented_message(
    tmp_path, monkeypatch, studio_cache_dir
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    result = CliRunner().invoke(
        app,
        [
            "run",
            "dreamfusion-sd",
            "prompt=a red chair",
            f"exp_root_dir={tmp_path / 'out'}",
            *TINY_RUN,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "stabilityai/stable-diffusion-2-1-base" in result.output
    assert "studio models pull" in result.output
    assert "Traceback" not in result.output
