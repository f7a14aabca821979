"""Ctrl+C once: stop training, run the test stage. Twice: quit quickly with a non-zero code."""

from __future__ import annotations

import os
import signal
import time

import pytest

from studio.training.checkpoint import load_checkpoint
from studio.training.signals import StopRequests
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
    # Wait until the run says training stopped: the first Ctrl+C was handled and the checkpoint
    # is written, so the second one lands in the slow test stage (not a guess by a fixed sleep).
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


@pytest.mark.parametrize(
    "inherited", [signal.SIG_IGN, signal.default_int_handler], ids=["ignored", "default"]
)
def test_after_a_first_ctrl_c_the_next_one_quits_even_if_sigint_was_ignored(inherited):
    """A process started in the background by a non-interactive shell inherits SIGINT ignored;
    the first Ctrl+C was still honoured, so the second must quit too, after training."""
    original = signal.signal(signal.SIGINT, inherited)
    try:
        stop = StopRequests()
        with stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # let the handler run
            assert stop.stop_training and stop.interrupts == 1
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        # without a Ctrl+C during training, the inherited handler comes back
        signal.signal(signal.SIGINT, inherited)
        with StopRequests():
            pass
        assert signal.getsignal(signal.SIGINT) is inherited
    finally:
        signal.signal(signal.SIGINT, original)
