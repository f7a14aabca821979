"""Ctrl+C once: stop training, run the test stage. Twice: quit quickly with a non-zero code."""

from __future__ import annotations

import signal
import time

from studio.training.checkpoint import load_checkpoint
from tests.conftest import wait_for_step

LONG = ["prompt=x", "trainer.max_steps=100000", "trainer.enable_progress_bar=false"]


def test_first_ctrl_c_runs_the_test_stage(studio_cli):
    proc = studio_cli.popen("run", "toy-fit", *LONG, "system.step_sleep=0.05")
    run_dir = wait_for_step(studio_cli, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    step = load_checkpoint(run_dir / "ckpts" / "last.ckpt")["global_step"]
    assert 3 <= step < 1000
    assert (run_dir / "save" / f"it{step}-test.mp4").is_file()
    assert "Press Ctrl+C again to quit" in err


def read_stderr_until(proc, text: str) -> str:
    """Lines of ``proc``'s stderr up to and including the first containing ``text``."""
    seen = []
    while True:
        line = proc.stderr.readline()
        if not line:  # the process ended without saying it
            raise AssertionError("".join(seen) + proc.communicate()[1])
        seen.append(line)
        if text in line:
            return "".join(seen)


def test_second_ctrl_c_quits_quickly(studio_cli):
    proc = studio_cli.popen(
        "run", "toy-fit", *LONG, "system.step_sleep=0.05", "system.test_sleep=2.0"
    )
    run_dir = wait_for_step(studio_cli, 3, proc)
    proc.send_signal(signal.SIGINT)
    # Wait for the run to say training stopped (it then enters the slow test stage). A fixed
    # sleep was not enough on a loaded machine: two SIGINTs arriving before the handler runs
    # count as one, and the run then finished normally.
    before = read_stderr_until(proc, "Training stopped by Ctrl+C")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = before + rest
    elapsed = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert elapsed < 5.0, elapsed
    assert "Traceback" not in err
    assert load_checkpoint(run_dir / "ckpts" / "last.ckpt")["global_step"] >= 3
    assert not list((run_dir / "save").glob("*-test.mp4"))
