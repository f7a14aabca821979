"""ProlificDreamer trains in float32 by default (the reference's ``precision: 32``); the mixed
precisions work with the LoRA: its adapters and camera embedding stay float32 master weights,
trained and checkpointed as such, with finite losses.

Under ``16-mixed`` the dynamic ``GradScaler`` starts at a scale of 2^16, and its first steps may
overflow the float16 gradients and be skipped while it halves the scale (``train/nonfinite`` = 1;
on an H100 one of 8 steps was). That is its documented calibration, not a failure: the
test allows such skips at the start only, and at most a quarter of the steps."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from studio.training.checkpoint import load_checkpoint
from tests.in_process_cli import run_method

#: 16-mixed runs the UNets in float16 on CUDA only (float32 on a CPU), so it is a GPU test.
PRECISIONS = ["bf16-mixed", pytest.param("16-mixed", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_mixed_precision_keeps_float32_lora_weights(
    precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = run_method(
        "prolificdreamer-primitives",
        "a red torus",
        tmp_path,
        monkeypatch,
        "trainer.max_steps=8",
        "trainer.val_check_interval=100",
        f"trainer.precision={precision}",
        "data.n_val_views=1",
        "data.n_test_views=1",
    )
    checkpoint = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    lora = checkpoint["objects"]["guidance"]
    assert {v.dtype for v in lora.values()} == {torch.float32}
    assert any(v.abs().sum() > 0 for k, v in lora.items() if ".up." in k)  # it trained
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    skipped = [float(row["train/nonfinite"]) == 1 for row in rows]
    calibration = skipped.index(False) if False in skipped else len(skipped)
    allowed = 2 if precision == "16-mixed" else 0
    assert calibration <= allowed and not any(skipped[calibration:]), skipped
    for row in rows:
        assert math.isfinite(float(row["train/loss_vsd"]))
        assert math.isfinite(float(row["train/loss_lora"]))
