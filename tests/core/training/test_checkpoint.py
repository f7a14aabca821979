"""Checkpoints: atomic writes, weights-only loading, RNG round trip."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from studio.errors import RunDirError
from studio.training.checkpoint import (
    atomic_write,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(
        path, {"global_step": 7, "state_dict": {"w": torch.ones(3)}, "rng": [capture_rng_state()]}
    )
    raw = torch.load(path, weights_only=True)  # no arbitrary pickles inside
    assert raw["global_step"] == 7
    assert load_checkpoint(path)["state_dict"]["w"].tolist() == [1.0, 1.0, 1.0]


def test_failure_mid_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"global_step": 1, "state_dict": {"w": torch.zeros(1000)}})
    before = path.read_bytes()

    def half_then_fail(handle):
        handle.write(b"\x00" * 4096)
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert load_checkpoint(path)["global_step"] == 1


def test_process_killed_during_write_never_corrupts_last_ckpt(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"global_step": 1, "state_dict": {"w": torch.zeros(10)}})
    child = textwrap.dedent(
        f"""
        import os, signal, torch
        from studio.training import checkpoint

        def write_then_die(handle):
            torch.save({{"format": "partial"}}, handle)
            handle.write(b"x" * 1_000_000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the write

        checkpoint.atomic_write({str(path)!r}, write_then_die)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True)
    assert result.returncode == -9
    assert load_checkpoint(path)["global_step"] == 1  # still the complete old file


def test_corrupt_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="could not be read as a studio checkpoint"):
        load_checkpoint(path)


def test_rng_state_round_trip():
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_atomic_write_is_replace_not_append(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda h: h.write(b"first"))
    atomic_write(path, lambda h: h.write(b"2"))
    assert path.read_bytes() == b"2"
    assert os.listdir(tmp_path) == ["file.bin"]
