"""A guidance that owns trainable parameters (toy plugin's ``toy-trainable`` on ``toy-guided-fit``):
optimized in its own group, the only guidance state in checkpoints, restored exactly on resume."""

from __future__ import annotations

import csv
import signal

import pytest
import torch

from studio.training.checkpoint import load_checkpoint
from tests.conftest import Studio, wait_for_step

STEPS = ["prompt=x", "trainer.max_steps=20", "trainer.enable_progress_bar=false"]


def last(studio: Studio) -> dict:
    (run_dir,) = studio.run_dirs("toy-guided")
    return load_checkpoint(run_dir / "ckpts" / "last.ckpt")


@pytest.fixture(scope="module")
def uninterrupted(toy_site, tmp_path_factory) -> dict:
    studio = Studio(toy_site, tmp_path_factory.mktemp("guided"))
    result = studio.run("run", "toy-guided-fit", *STEPS)
    assert result.returncode == 0, result.stderr
    return last(studio) | {"studio": studio}


def test_the_guidance_trains_in_its_own_group_and_only_its_trainable_state_is_saved(uninterrupted):
    checkpoint = uninterrupted
    assert checkpoint["global_step"] == 20
    assert set(checkpoint["objects"]) == {"guidance"}
    saved = checkpoint["objects"]["guidance"]
    assert set(saved) == {"adapter.lora.0.weight", "adapter.lora.1.weight"}  # never "frozen"
    assert not any("guidance" in key or "adapter" in key for key in checkpoint["state_dict"])
    groups = checkpoint["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["field", "guidance"]
    assert len(groups[1]["params"]) == 2 and groups[1]["initial_lr"] == 0.01
    (run_dir,) = uninterrupted["studio"].run_dirs("toy-guided")
    with (run_dir / "metrics.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    # both groups follow the preset's warm-up from their own rates (0.01 and 0.02)
    assert float(row["lr/guidance"]) / float(row["lr/field"]) == pytest.approx(0.5)
    # it trained: the low-rank correction moved away from its random start
    assert saved["adapter.lora.1.weight"].abs().sum() > 0


def test_resume_restores_the_guidance_state_exactly(studio_cli, uninterrupted):
    proc = studio_cli.popen("run", "toy-guided-fit", *STEPS, "system.step_sleep=0.15")
    run_dir = wait_for_step(studio_cli, 10, proc, name="toy-guided")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    resumed = studio_cli.run("resume", str(run_dir), "system.step_sleep=0")
    assert resumed.returncode == 0, resumed.stderr
    final = last(studio_cli)
    for key, value in uninterrupted["objects"]["guidance"].items():
        assert torch.equal(value, final["objects"]["guidance"][key]), key
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, final["state_dict"][key]), key
