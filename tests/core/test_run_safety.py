"""Runs cannot clobber each other; resume continues from the newest complete checkpoint of any kind
after kills at random points; finished runs and resumed overrides are explained (toy plugin,
real CLI in subprocesses)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
import yaml

from studio.training.checkpoint import load_checkpoint
from tests.conftest import Studio, logged_steps, wait_for_step

FIXED = ["prompt=x", "use_timestamp=false", "tag=fixed", "trainer.enable_progress_bar=false"]
PERIODIC = [
    "prompt=x",
    "trainer.max_steps=20",
    "trainer.val_check_interval=100",  # no validation: last.ckpt only at the very end
    "checkpoint.save_last=false",
    "checkpoint.every_n_train_steps=4",
    "trainer.enable_progress_bar=false",
]


def test_a_second_run_into_a_used_directory_is_refused_or_overwritten(studio_cli):
    first = studio_cli.run("run", "toy-fit", *FIXED, "trainer.max_steps=2")
    assert first.returncode == 0, first.stderr
    (root,) = studio_cli.run_dirs()
    assert root.name == "fixed"
    before = load_checkpoint(root / "ckpts" / "last.ckpt")["state_dict"]
    second = studio_cli.run("run", "toy-fit", *FIXED, "trainer.max_steps=2", "seed=5")
    assert second.returncode == 2
    assert "holds a run already" in second.stderr and "--overwrite" in second.stderr
    assert "Traceback" not in second.stderr
    after = load_checkpoint(root / "ckpts" / "last.ckpt")["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # untouched
    third = studio_cli.run("run", "toy-fit", *FIXED, "trainer.max_steps=2", "seed=5", "--overwrite")
    assert third.returncode == 0, third.stderr
    assert yaml.safe_load((root / "configs" / "parsed.yaml").read_text())["seed"] == 5


def test_concurrent_runs_into_one_directory_the_second_names_the_first(studio_cli):
    proc = studio_cli.popen(
        "run", "toy-fit", *FIXED, "trainer.max_steps=500", "system.step_sleep=0.2"
    )
    root = wait_for_step(studio_cli, 1, proc)
    try:
        second = studio_cli.run("run", "toy-fit", *FIXED)
        assert second.returncode == 2
        assert f"in use by process {proc.pid}" in second.stderr, second.stderr
        resumed = studio_cli.run("resume", str(root))
        assert resumed.returncode == 2 and f"process {proc.pid}" in resumed.stderr
        tested = studio_cli.run("test", str(root))
        assert tested.returncode == 2 and f"process {proc.pid}" in tested.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    lock = json.loads((root / "run.lock").read_text())  # left by the killed process
    assert lock["pid"] == proc.pid
    resumed = studio_cli.run("resume", str(root), "system.step_sleep=0", "trainer.max_steps=30")
    assert resumed.returncode == 0, resumed.stderr
    assert "Took over the stale lock" in resumed.stderr
    assert not (root / "run.lock").exists()


@pytest.fixture(scope="module")
def uninterrupted(toy_site, tmp_path_factory) -> dict:
    studio = Studio(toy_site, tmp_path_factory.mktemp("periodic"))
    result = studio.run("run", "toy-fit", *PERIODIC)
    assert result.returncode == 0, result.stderr
    (root,) = studio.run_dirs()
    return final(root)


def final(root: Path) -> dict:
    checkpoint = load_checkpoint(root / "ckpts" / "step=20.ckpt")
    assert checkpoint["global_step"] == 20
    return {"state": checkpoint["state_dict"], "metrics": (root / "metrics.csv").read_text()}


@pytest.mark.parametrize("seed", [0, 1])
def test_killed_at_random_points_resume_is_bit_identical(studio_cli, uninterrupted, seed):
    """SIGKILL at random moments (several times; some land while a checkpoint is written), with
    periodic checkpoints only; every resume continues from the newest complete one."""
    rng = random.Random(seed)
    proc = studio_cli.popen("run", "toy-fit", *PERIODIC, "system.step_sleep=0.05")
    root = wait_for_step(studio_cli, 5, proc)  # past the first checkpoint (step 4)
    kills = 0
    while kills < 3:
        reached = logged_steps(root)
        deadline = time.monotonic() + 120
        while logged_steps(root) <= reached and proc.poll() is None:  # let it make progress
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # then kill at a random point
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += 1
        if kills == 1:  # as if killed inside an atomic write: its temporary file remains
            (root / "ckpts" / ".step=8.ckpt.interrupted.tmp").write_bytes(b"partial")
        proc = studio_cli.popen("resume", str(root), "system.step_sleep=0.05")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert kills >= 1
    assert not list((root / "ckpts").glob(".*.tmp"))
    result = final(root)
    assert result["metrics"] == uninterrupted["metrics"]
    for key, tensor in uninterrupted["state"].items():
        assert torch.equal(tensor, result["state"][key]), key


def test_resume_after_a_kill_uses_periodic_checkpoints(studio_cli, uninterrupted):
    proc = studio_cli.popen("run", "toy-fit", *PERIODIC, "system.step_sleep=0.15")
    root = wait_for_step(studio_cli, 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (root / "ckpts" / "last.ckpt").exists()
    assert (root / "ckpts" / "step=8.ckpt").exists()
    resumed = studio_cli.run("resume", str(root), "system.step_sleep=0")
    assert resumed.returncode == 0, resumed.stderr
    assert "system.step_sleep: 0.15 -> 0.0" in resumed.stderr  # the change is shown
    history = list((root / "configs" / "history").glob("parsed-*.yaml"))
    assert len(history) == 1  # the original config is kept
    assert yaml.safe_load(history[0].read_text())["system"]["step_sleep"] == 0.15
    result = final(root)
    assert result["metrics"] == uninterrupted["metrics"]


def test_resume_of_a_finished_run_says_so_and_can_train_longer(studio_cli):
    assert studio_cli.run("run", "toy-fit", "prompt=x", "trainer.max_steps=4").returncode == 0
    (root,) = studio_cli.run_dirs()
    again = studio_cli.run("resume", str(root))
    assert again.returncode == 0
    assert "finished training at step 4" in again.stderr
    assert "trainer.max_steps=8" in again.stderr
    assert "Test video" not in again.stderr  # nothing re-rendered
    longer = studio_cli.run("resume", str(root), "trainer.max_steps=6")
    assert longer.returncode == 0, longer.stderr
    assert load_checkpoint(root / "ckpts" / "last.ckpt")["global_step"] == 6
    assert yaml.safe_load((root / "finished.yaml").read_text())["step"] == 6


def test_a_corrupt_checkpoint_is_explained_without_torchs_advice(studio_cli):
    assert studio_cli.run("run", "toy-fit", "prompt=x", "trainer.max_steps=2").returncode == 0
    (root,) = studio_cli.run_dirs()
    (root / "ckpts" / "last.ckpt").write_bytes(b"\x80\x02garbage")
    for path in (root / "ckpts").glob("step=*.ckpt"):
        path.unlink()
    result = studio_cli.run("test", str(root))
    assert result.returncode == 2
    assert "truncated, damaged or not a torch checkpoint" in result.stderr
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr


def test_a_stale_lock_of_another_host_is_respected(studio_cli):
    assert studio_cli.run("run", "toy-fit", "prompt=x", "trainer.max_steps=2").returncode == 0
    (root,) = studio_cli.run_dirs()
    record = {"pid": os.getpid(), "host": socket.gethostname() + "-other", "command": "run"}
    (root / "run.lock").write_text(json.dumps(record))
    result = studio_cli.run("test", str(root))
    assert result.returncode == 2 and "-other" in result.stderr
    (root / "run.lock").unlink()
    assert logged_steps(root) == 2
