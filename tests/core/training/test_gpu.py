"""The trainer on CUDA (run on the GPU machine): fp16 autocast with a grad scaler, NCCL ranks."""

from __future__ import annotations

import pytest
import torch

from studio.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.gpu


def test_single_gpu_fp16_run(studio_cli):
    result = studio_cli.run(
        "run",
        "toy-fit",
        "prompt=x",
        "--gpus",
        "0",
        "trainer.max_steps=20",
        "trainer.precision=16-mixed",
        "trainer.enable_progress_bar=false",
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = studio_cli.run_dirs()
    checkpoint = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert checkpoint["scaler"] is not None  # fp16 on CUDA uses a gradient scaler
    assert "cuda" in checkpoint["rng"][0]
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    assert (run_dir / "save" / "it20-test.mp4").stat().st_size > 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpu_nccl_run(studio_cli):
    record = studio_cli.cwd / "record"
    record.mkdir()
    result = studio_cli.run(
        "run",
        "toy-fit",
        "prompt=x",
        "--gpus",
        "0,1",
        "trainer.max_steps=10",
        "trainer.enable_progress_bar=false",
        f"system.record_dir={record}",
        "data.n_test_views=4",
    )
    assert result.returncode == 0, result.stderr
    ranks = [torch.load(record / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["cameras"] != ranks[1]["cameras"]
    for key, tensor in ranks[0]["state_dict"].items():
        assert torch.equal(tensor, ranks[1]["state_dict"][key]), key
