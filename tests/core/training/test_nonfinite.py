"""Non-finite steps: a NaN/inf loss or gradient skips that update (counted in metrics.csv); too
many in a row stop the run with one paragraph; NaN is never written (checkpoints, images).

The toy system's ``nan_at_steps``/``nan_from_step`` use the ``global_step`` seen during the step,
so a NaN at step ``s`` is the metrics row ``s + 1`` and lies between ``step=s.ckpt`` and
``step=s+1.ckpt``.
"""

from __future__ import annotations

import csv
import warnings

import pytest
import torch
from typer.testing import CliRunner

from studio.cli.app import app
from studio.training.checkpoint import load_checkpoint
from studio.training.step_logs import NONFINITE, SkippedSteps
from studio.training.trainer import Trainer, unit_scaler


def run(tmp_path, *overrides):
    args = [
        "run",
        "toy-fit",
        "prompt=x",
        f"exp_root_dir={tmp_path}",
        "trainer.enable_progress_bar=false",
        "data.n_test_views=1",
    ]
    result = CliRunner().invoke(app, [*args, *overrides])
    runs = sorted((tmp_path / "toy").iterdir()) if (tmp_path / "toy").is_dir() else []
    return result, runs


def rows(run_dir) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def skipped_rows(run_dir) -> list[int]:
    return [int(r["step"]) for r in rows(run_dir) if float(r[NONFINITE]) == 1.0]


def finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def states_equal(a: dict, b: dict) -> bool:
    """Same parameters and optimizer state (moments and step count) in two checkpoints."""
    if any(not torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items()):
        return False
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    return all(
        torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[index][name]))
        for index, state in opt_a.items()
        for name, value in state.items()
    )


def test_isolated_nan_steps_are_skipped_and_counted(toy_plugin, tmp_path):
    result, (run_dir,) = run(
        tmp_path,
        "trainer.max_steps=8",
        "system.nan_at_steps=[2,5]",
        "checkpoint.every_n_train_steps=1",
    )
    assert result.exit_code == 0, result.output
    assert skipped_rows(run_dir) == [3, 6]
    assert [r["train/loss"] for r in rows(run_dir) if int(r["step"]) in (3, 6)] == ["nan"] * 2
    assert "2 training step(s) had a non-finite loss or gradient and were skipped" in (
        result.output
    )
    ckpt = {n: load_checkpoint(run_dir / "ckpts" / f"step={n}.ckpt") for n in range(1, 9)}
    assert all(finite(c["state_dict"]) for c in ckpt.values())
    for n in range(1, 8):  # a skipped step changes nothing, every other one does
        assert states_equal(ckpt[n], ckpt[n + 1]) == (n in (2, 5)), n
    assert int(ckpt[8]["optimizer"]["state"][0]["step"]) == 6  # 8 steps, 2 skipped
    last = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert finite(last["state_dict"]) and last["global_step"] == 8
    assert last["scaler"]["scale"] == 1.0  # float32: the scaler only checks, never scales


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("loss", []),  # NaN loss, finite gradients: skipped all the same
        ("inf", []),
        ("grad", ["trainer.accumulate_grad_batches=2", "system.nan_micro_batch=1"]),
        ("loss", ["trainer.accumulate_grad_batches=2", "system.nan_micro_batch=0"]),
    ],
)
def test_every_kind_of_nonfinite_step_is_skipped(toy_plugin, tmp_path, kind, extra):
    result, (run_dir,) = run(
        tmp_path,
        "trainer.max_steps=4",
        "system.nan_at_steps=[1]",
        f"system.nan_kind={kind}",
        "checkpoint.every_n_train_steps=1",
        *extra,
    )
    assert result.exit_code == 0, result.output
    assert skipped_rows(run_dir) == [2]
    ckpt = {n: load_checkpoint(run_dir / "ckpts" / f"step={n}.ckpt") for n in (1, 2, 3)}
    assert states_equal(ckpt[1], ckpt[2]) and not states_equal(ckpt[2], ckpt[3])


def test_nan_for_good_stops_with_one_paragraph(studio_cli):
    result = studio_cli.run(
        "run",
        "toy-fit",
        "prompt=x",
        "trainer.max_steps=30",
        "trainer.val_check_interval=4",
        "trainer.max_nonfinite_steps=5",
        "trainer.enable_progress_bar=false",
        "system.nan_from_step=7",
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    (run_dir,) = studio_cli.run_dirs()
    run_dir = run_dir.relative_to(studio_cli.cwd)  # as the command line gave it
    assert line.startswith("error: Training stopped at step 12: it and the 4 step(s) before it")
    assert "(from step 8)" in line and "trainer.max_nonfinite_steps is 5" in line
    assert "The last step with finite ones was 7 (train/loss=" in line
    assert "Lower the learning rate" in line and "system.loss.*" in line
    assert f"The last good checkpoint is {run_dir / 'ckpts' / 'last.ckpt'} (step 8" in line
    assert f"studio resume {run_dir}" in line

    run_dir = studio_cli.cwd / run_dir
    assert skipped_rows(run_dir) == [8, 9, 10, 11, 12]
    last = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert last["global_step"] == 8 and finite(last["state_dict"])  # validation at 8: params of 7
    images = sorted(p.name for p in (run_dir / "save").rglob("*.png"))
    assert images == ["it4-0.png", "it4-1.png", "it8-0.png", "it8-1.png"]  # not at 12, no test
    assert not (run_dir / "finished.yaml").exists()


def test_max_nonfinite_steps_zero_never_stops(toy_plugin, tmp_path):
    result, (run_dir,) = run(
        tmp_path, "trainer.max_steps=6", "trainer.max_nonfinite_steps=0", "system.nan_from_step=0"
    )
    assert result.exit_code == 0, result.output
    assert skipped_rows(run_dir) == list(range(1, 7))
    last = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert finite(last["state_dict"])
    assert all(int(s["step"]) == 0 for s in last["optimizer"]["state"].values())  # never stepped
    assert (run_dir / "save" / "it6-test.mp4").is_file()


def test_parameters_written_nan_are_never_saved_nor_rendered(toy_plugin, tmp_path):
    result, (run_dir,) = run(
        tmp_path,
        "trainer.max_steps=20",
        "trainer.val_check_interval=4",
        "trainer.max_nonfinite_steps=0",
        "system.nan_param_at_step=5",
    )
    assert result.exit_code == 2
    (message,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert message.startswith("error: At step 8, before rendering the validation views: 1 param")
    assert "system.field.net.0.weight" in message and "last.ckpt (step 4)" in message
    assert load_checkpoint(run_dir / "ckpts" / "last.ckpt")["global_step"] == 4
    assert not list((run_dir / "save").glob("it8*"))


def test_float16_on_cpu_trains_exactly_like_float32(toy_plugin, tmp_path):
    """16-mixed on CPU runs float32 (no autocast), as it did before the scaler was always on."""
    states = {}
    for precision in ("32", "16-mixed"):
        result, (run_dir,) = run(
            tmp_path / precision,
            "trainer.max_steps=4",
            f"trainer.precision={precision}",
            "trainer.accelerator=cpu",
        )
        assert result.exit_code == 0, result.output
        states[precision] = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert "precision 16-mixed on CPU runs in float32" in result.output
    assert states_equal(states["32"], states["16-mixed"])
    assert states["16-mixed"]["scaler"] == states["32"]["scaler"]
    assert states["16-mixed"]["scaler"]["scale"] == 1.0


def test_checkpoint_without_scaler_state_resumes_exactly(toy_plugin, tmp_path):
    """Checkpoints written before every run had a scaler hold ``scaler: None``."""
    result, (straight,) = run(tmp_path / "a", "trainer.max_steps=6")
    assert result.exit_code == 0, result.output
    result, (run_dir,) = run(tmp_path / "b", "trainer.max_steps=3")
    assert result.exit_code == 0, result.output
    path = run_dir / "ckpts" / "last.ckpt"
    old = torch.load(path, weights_only=True)
    torch.save({**old, "scaler": None}, path)
    resumed = CliRunner().invoke(app, ["resume", str(run_dir), "trainer.max_steps=6"])
    assert resumed.exit_code == 0, resumed.output
    assert states_equal(load_checkpoint(straight / "ckpts" / "last.ckpt"), load_checkpoint(path))


def test_unit_scaler_skips_without_scaling_through_the_fused_adam():
    """CPU's fused Adam takes the inf flag as a tensor (the CUDA path: no host sync)."""
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param], lr=0.1, fused=True)
    assert optimizer._step_supports_amp_scaling
    scaler = unit_scaler("cpu")
    seen = []
    for factor in (1.0, float("nan"), float("inf"), 1.0):
        scaler.scale((param * factor).sum()).backward()
        scaler.step(optimizer)
        (flag,) = scaler._found_inf_per_device(optimizer).values()
        scaler.update()
        optimizer.zero_grad()
        seen.append((flag.item(), param.detach().clone(), int(optimizer.state[param]["step"])))
        assert scaler.get_scale() == 1.0
    assert [s[0] for s in seen] == [0.0, 1.0, 1.0, 0.0]
    assert [s[2] for s in seen] == [1, 1, 1, 2]
    assert torch.equal(seen[0][1], seen[2][1]) and not torch.equal(seen[2][1], seen[3][1])


def test_scaler_state_loads_only_into_its_own_kind():
    def load(scaler, saved):
        Trainer._load_scaler(type("T", (), {"scaler": scaler})(), saved)
        return scaler.state_dict()

    dynamic = torch.amp.GradScaler("cpu").state_dict()
    backed_off = {**dynamic, "scale": 1024.0}
    unit = {**unit_scaler("cpu").state_dict(), "_growth_tracker": 7}
    assert load(unit_scaler("cpu"), unit) == unit  # round trip
    assert load(unit_scaler("cpu"), backed_off)["scale"] == 1.0  # e.g. resumed in float32
    assert load(unit_scaler("cpu"), None)["scale"] == 1.0
    assert load(torch.amp.GradScaler("cpu"), backed_off) == backed_off
    assert load(torch.amp.GradScaler("cpu"), unit) == dynamic  # starts fresh, as with None


def test_skipped_steps_counts_streaks_and_keeps_the_last_finite_losses():
    skipped = SkippedSteps()
    good = {"train/loss": 0.5, NONFINITE: 0.0, "lr/all": 0.01}
    bad = {"train/loss": float("nan"), NONFINITE: 1.0}
    assert [skipped.observe(s, v) for s, v in [(1, good), (2, bad), (3, bad)]] == [0, 1, 1]
    assert (skipped.consecutive, skipped.total, skipped.streak_start) == (2, 2, 2)
    assert skipped.last_good_step == 1 and skipped.last_good_losses == {"train/loss": 0.5}
    skipped.observe(4, good)
    skipped.observe(5, bad)
    assert (skipped.consecutive, skipped.total, skipped.streak_start) == (1, 3, 5)


@pytest.mark.gpu
def test_cuda_step_checks_and_skips_without_a_host_sync(toy_plugin, tmp_path, monkeypatch):
    """The scaler's check, the skip (the fused Adam takes the inf flag as a tensor) and the
    logged flag add no host sync to a training step (the toy's own step and batch may sync)."""
    syncs: list[str] = []

    def unwatched(fn):
        def call(*args, **kwargs):
            mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode(0)
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(mode)

        return call

    train_step = Trainer._train_step

    def watched_step(self, params):
        if "training_step" not in vars(self.system):
            self.system.training_step = unwatched(self.system.training_step)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                return train_step(self, params)
            finally:
                torch.cuda.set_sync_debug_mode(0)
                syncs.extend(
                    str(w.message) for w in caught if "called a synchronizing" in str(w.message)
                )

    monkeypatch.setattr(Trainer, "_train_step", watched_step)
    monkeypatch.setattr(Trainer, "_next_batch", unwatched(Trainer._next_batch))
    result, (run_dir,) = run(
        tmp_path, "--gpus", "0", "trainer.max_steps=6", "system.nan_at_steps=[2]"
    )
    assert result.exit_code == 0, result.output
    assert skipped_rows(run_dir) == [3]
    assert syncs == []


def test_a_nan_loss_on_one_rank_skips_and_stops_every_rank(studio_cli):
    """Rank 1's loss is NaN with finite gradients: the averaged gradients carry it to rank 0, so
    every rank skips the same steps, counts the same flags and stops at the same step."""
    result = studio_cli.run(
        "run",
        "toy-fit",
        "--nproc",
        "2",
        "prompt=x",
        "trainer.enable_progress_bar=false",
        "trainer.max_steps=20",
        "trainer.max_nonfinite_steps=3",
        "checkpoint.every_n_train_steps=1",
        "system.nan_at_steps=[1]",
        "system.nan_from_step=4",
        "system.nan_rank=1",
        "system.nan_kind=loss",
        timeout=120,
    )
    # 2 (StudioError), or at times 134: gloo may abort a worker that exits right after its peer
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: Training stopped at step 7: it and the 2 step(s) before it" in result.stderr
    (run_dir,) = studio_cli.run_dirs()
    assert skipped_rows(run_dir) == [2, 5, 6, 7]  # rank 0's metrics; its own loss was finite
    ckpt = {n: load_checkpoint(run_dir / "ckpts" / f"step={n}.ckpt") for n in (1, 2, 3)}
    assert states_equal(ckpt[1], ckpt[2]) and not states_equal(ckpt[2], ckpt[3])
    assert not (run_dir / "ckpts" / "step=7.ckpt").exists()
