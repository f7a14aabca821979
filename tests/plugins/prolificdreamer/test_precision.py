"""ProlificDreamer trains in float32 by default (the reference's ``precision: 32``); the mixed
precisions work with the LoRA: its adapters and camera embedding stay float32 master weights,
trained and checkpointed as such, with finite losses.

Under ``16-mixed`` the dynamic ``GradScaler`` starts at a scale of 2^16 and halves it on every
step whose float16 gradients overflow, skipping that step (``train/nonfinite`` = 1): its
documented calibration. On an H100, 40 steps of this preset and prompt skipped 5, all among the
first 12 (``xx.xx......x`` then 28 applied: the scale settled at 2^11). The GPU case runs 32
steps and asserts that the skips stay within a few halvings and that the second half of the run
(steps 16-31) applies every step."""

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
#: Training steps per precision: 16-mixed's scaler calibrates in its first dozen (module docstring).
STEPS = {"bf16-mixed": 8, "16-mixed": 32}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_mixed_precision_keeps_float32_lora_weights(
    precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = STEPS[precision]
    run_dir = run_method(
        "prolificdreamer-primitives",
        "a red torus",
        tmp_path,
        monkeypatch,
        f"trainer.max_steps={steps}",
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
    assert len(rows) == steps
    skipped = [float(row["train/nonfinite"]) == 1 for row in rows]
    if precision == "16-mixed":  # calibration: a few halvings from 2^16, then every step applies
        assert sum(skipped) <= 8 and not any(skipped[steps // 2 :]), skipped
    else:
        assert not any(skipped), skipped
    for row in rows:
        assert math.isfinite(float(row["train/loss_vsd"]))
        assert math.isfinite(float(row["train/loss_lora"]))
