"""Trainer options through the CLI in-process: accumulation, AMP, TensorBoard, sanity validation."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from typer.testing import CliRunner

from studio.cli.app import app
from studio.training.checkpoint import load_checkpoint


def run(tmp_path, *overrides):
    args = [
        "run",
        "toy-fit",
        "prompt=x",
        f"exp_root_dir={tmp_path}",
        "trainer.enable_progress_bar=false",
    ]
    result = CliRunner().invoke(app, [*args, *overrides])
    runs = sorted((tmp_path / "toy").iterdir()) if (tmp_path / "toy").is_dir() else []
    return result, runs


def test_gradient_accumulation_counts_optimizer_steps(toy_plugin, tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    result, (run_dir,) = run(
        tmp_path,
        "trainer.max_steps=3",
        "trainer.accumulate_grad_batches=2",
        f"system.record_dir={record}",
        "data.n_test_views=1",
    )
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert checkpoint["global_step"] == 3
    assert int(checkpoint["optimizer"]["state"][0]["step"]) == 3
    recorded = torch.load(record / "rank0.pt", weights_only=True)
    assert len(recorded["cameras"]) == 6  # two micro-batches per optimizer step
    assert recorded["steps"] == [0, 0, 1, 1, 2, 2]


def test_each_metrics_row_holds_its_own_steps_values(toy_plugin, tmp_path):
    """Logs are read back from the device one step late; each row still gets its step's values,
    and the last step's row is written (validation at 4 and the end at 7 flush the pending)."""
    import csv

    result, (run_dir,) = run(tmp_path, "trainer.max_steps=7", "trainer.val_check_interval=4")
    assert result.exit_code == 0, result.output
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 8))
    assert [float(r["train/computed_at"]) for r in rows] == [float(s) for s in range(7)]


def test_bf16_autocast_runs(toy_plugin, tmp_path):
    result, (run_dir,) = run(tmp_path, "trainer.max_steps=3", "trainer.precision=bf16-mixed")
    assert result.exit_code == 0, result.output
    state = load_checkpoint(run_dir / "ckpts" / "last.ckpt")["state_dict"]
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in state.values())


def test_sanity_validation_and_gradient_clipping(toy_plugin, tmp_path):
    result, (run_dir,) = run(
        tmp_path,
        "trainer.max_steps=2",
        "trainer.num_sanity_val_steps=1",
        "trainer.gradient_clip_val=0.01",
    )
    assert result.exit_code == 0, result.output
    assert (run_dir / "save" / "it0-0.png").is_file()  # sanity pass before step 1
    assert not (run_dir / "save" / "it0-1.png").exists()  # limited to one view


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is not None, reason="tensorboard installed"
)
def test_tensorboard_without_the_package_is_a_clear_error(toy_plugin, tmp_path):
    result, _ = run(tmp_path, "trainer.max_steps=1", "trainer.tensorboard=true")
    assert result.exit_code == 2
    assert "pip install tensorboard" in result.output
