"""Resume continues exactly: 20 steps in one go == 10 steps, stop, `studio resume`, 10 more."""

from __future__ import annotations

import signal

import pytest
import torch

from studio.training.checkpoint import load_checkpoint
from tests.conftest import Studio, wait_for_step

STEPS = ["prompt=x", "trainer.max_steps=20", "trainer.enable_progress_bar=false"]


def final_state(studio: Studio) -> dict[str, torch.Tensor]:
    (run_dir,) = studio.run_dirs()
    checkpoint = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert checkpoint["global_step"] == 20
    return {"model": checkpoint["state_dict"], "optimizer": checkpoint["optimizer"]["state"]}


def assert_identical(a: dict, b: dict) -> None:
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for index, state in a["optimizer"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"][index][name]))


@pytest.fixture(scope="module")
def uninterrupted(toy_site, tmp_path_factory) -> dict:
    studio = Studio(toy_site, tmp_path_factory.mktemp("straight"))
    result = studio.run("run", "toy-fit", *STEPS)
    assert result.returncode == 0, result.stderr
    return final_state(studio)


def test_sigterm_then_resume_is_bit_identical(studio_cli, uninterrupted):
    proc = studio_cli.popen("run", "toy-fit", *STEPS, "system.step_sleep=0.15")
    run_dir = wait_for_step(studio_cli, 10, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "studio resume" in err and "Traceback" not in err
    stopped_at = load_checkpoint(run_dir / "ckpts" / "last.ckpt")["global_step"]
    assert 10 <= stopped_at < 20
    assert not list((run_dir / "save").glob("*-test.mp4"))  # SIGTERM does not run the test stage

    resumed = studio_cli.run("resume", str(run_dir), "system.step_sleep=0")
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "save" / "it20-test.mp4").is_file()
    assert_identical(final_state(studio_cli), uninterrupted)


def test_kill_then_resume_from_last_validation_checkpoint(studio_cli, uninterrupted):
    proc = studio_cli.popen("run", "toy-fit", *STEPS, "system.step_sleep=0.15")
    run_dir = wait_for_step(studio_cli, 12, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert load_checkpoint(run_dir / "ckpts" / "last.ckpt")["global_step"] == 10

    resumed = studio_cli.run("resume", str(run_dir), "system.step_sleep=0")
    assert resumed.returncode == 0, resumed.stderr
    assert_identical(final_state(studio_cli), uninterrupted)
    steps = [
        int(line.split(",")[0]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]
    ]
    assert steps == list(range(1, 21))  # rows after the checkpoint were replaced, not duplicated


def test_resume_needs_a_checkpoint(studio_cli):
    proc = studio_cli.popen("run", "toy-fit", *STEPS, "system.step_sleep=0.2")
    run_dir = wait_for_step(studio_cli, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    result = studio_cli.run("resume", str(run_dir))
    assert result.returncode == 2
    assert "has no checkpoint to resume from" in result.stderr
    assert "Traceback" not in result.stderr
