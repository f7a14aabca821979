"""Kill and resume across Magic3D's stage boundary (the core issue's pipeline contract, on this
method): ``magic3d-primitives`` at a few steps per stage, SIGKILLed inside the refine stage and
resumed, ends bit-identical on the CPU to an uninterrupted run, without converting again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from studio.rundir import find_checkpoint
from studio.training.checkpoint import load_checkpoint
from tests.conftest import Studio
from tests.core.test_pipeline import wait_for_stage_step

METHOD = "magic3d-primitives"
ARGS = [
    "prompt=a red cube",
    "trainer.enable_progress_bar=false",
    "data.n_test_views=1",
    "data.n_val_views=1",
    "coarse.trainer.max_steps=6",
    "coarse.system.geometry.isosurface_threshold=5.0",  # a number: no silhouette search
    "refine.trainer.max_steps=40",
    "refine.trainer.val_check_interval=1000",
    "refine.checkpoint.every_n_train_steps=10",
]


def run_root(studio: Studio) -> Path:
    (root,) = (studio.cwd / "outputs" / METHOD).iterdir()
    return root


def final(root: Path) -> dict:
    refine = root / "stages" / "2-refine"
    checkpoint = load_checkpoint(refine / "ckpts" / "last.ckpt")
    assert checkpoint["global_step"] == 40
    return {
        "state": checkpoint["state_dict"],
        "metrics": [
            (root / "stages" / s / "metrics.csv").read_text() for s in ("1-coarse", "2-refine")
        ],
        "conversion": (refine / "configs" / "conversion.yaml").read_text(),
    }


@pytest.mark.slow
def test_killed_in_the_refine_stage_then_resumed_is_bit_identical(toy_site, tmp_path) -> None:
    env = {"STUDIO_CACHE_DIR": str(tmp_path / "cache")}
    whole = Studio(toy_site, tmp_path / "whole")
    whole.cwd.mkdir()
    result = whole.run("run", METHOD, *ARGS, **env)
    assert result.returncode == 0, result.stderr

    killed = Studio(toy_site, tmp_path / "killed")
    killed.cwd.mkdir()
    proc = killed.popen("run", METHOD, *ARGS, **env)
    root = wait_for_stage_step(killed.cwd / "outputs" / METHOD, 12, proc, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    refine = root / "stages" / "2-refine"
    assert not (refine / "finished.yaml").exists()
    newest, _ = find_checkpoint(str(refine), "run")
    assert load_checkpoint(newest)["global_step"] in (10, 20, 30)

    result = killed.run("resume", str(root), **env)
    assert result.returncode == 0, result.stderr
    assert "[2/2 refine] Resuming" in result.stderr and "Geometry converted" not in result.stderr
    a, b = final(root), final(run_root(whole))
    assert a["metrics"] == b["metrics"]
    assert a["state"].keys() == b["state"].keys()
    for key, tensor in a["state"].items():
        assert torch.equal(tensor, b["state"][key]), key
    # the record names each run's own coarse stage; the level and step are the same
    assert a["conversion"].split("step:")[1] == b["conversion"].split("step:")[1]
