"""Data parallelism on CPU: two gloo processes started by `studio run --nproc 2`."""

from __future__ import annotations

import csv
import signal
import time

import torch

from studio.training.checkpoint import load_checkpoint
from tests.conftest import wait_for_step

BASE = ["prompt=x", "trainer.enable_progress_bar=false", "data.n_test_views=4"]


def test_two_ranks_step_on_their_own_cameras_and_stay_identical(studio_cli):
    record = studio_cli.cwd / "record"
    record.mkdir()
    result = studio_cli.run(
        "run",
        "toy-fit",
        "--nproc",
        "2",
        *BASE,
        "trainer.max_steps=8",
        "trainer.val_check_interval=4",
        f"system.record_dir={record}",
    )
    assert result.returncode == 0, result.stderr
    ranks = [torch.load(record / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for rank in ranks:
        assert rank["steps"] == list(range(8))  # both ranks ran every step
        assert len(rank["cameras"]) == 8 and len(rank["cameras"][0]) == 2 * 3  # batch 2 per rank
    assert ranks[0]["cameras"] != ranks[1]["cameras"]  # per-rank seeds: different cameras
    for key, tensor in ranks[0]["state_dict"].items():
        assert torch.equal(tensor, ranks[1]["state_dict"][key]), key  # gradients were averaged

    (run_dir,) = studio_cli.run_dirs()
    checkpoint = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])
    for key, tensor in checkpoint["state_dict"].items():
        assert torch.equal(tensor, ranks[0]["state_dict"][key])
    with (run_dir / "metrics.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == list(range(1, 9))  # rank 0 only
    save = run_dir / "save"
    # validation views 0 and 1 were rendered by ranks 0 and 1 and written by rank 0
    assert sorted(p.name for p in save.glob("it*-?.png")) == [
        "it4-0.png",
        "it4-1.png",
        "it8-0.png",
        "it8-1.png",
    ]
    assert sorted(p.name for p in (save / "it8-test").iterdir()) == [
        "0.png",
        "1.png",
        "2.png",
        "3.png",
    ]
    assert (save / "it8-test.mp4").is_file()
    assert len(studio_cli.run_dirs()) == 1


def test_sigterm_to_launcher_checkpoints_and_resume_continues_on_two(studio_cli):
    args = [
        "run",
        "toy-fit",
        "--nproc",
        "2",
        *BASE,
        "trainer.max_steps=12",
        "system.step_sleep=0.15",
    ]
    proc = studio_cli.popen(*args)
    run_dir = wait_for_step(studio_cli, 4, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    step = load_checkpoint(run_dir / "ckpts" / "last.ckpt")["global_step"]
    assert 4 <= step < 12
    resumed = studio_cli.run("resume", str(run_dir), "--nproc", "2", "system.step_sleep=0")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run_dir / "ckpts" / "last.ckpt")["global_step"] == 12


def test_a_dying_rank_does_not_hang_the_launcher(studio_cli):
    start = time.monotonic()
    result = studio_cli.run(
        "run",
        "toy-fit",
        "--nproc",
        "2",
        *BASE,
        "trainer.max_steps=50",
        "system.fail_at_step=3",
        "system.fail_rank=1",
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert elapsed < 60, elapsed
    assert "planned failure at step 3" in result.stderr
