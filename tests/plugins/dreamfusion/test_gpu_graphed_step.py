"""Captured training steps on CUDA (run on the GPU machine): the graphed DreamFusion step is the
eager step, and runs resume with or without graphs.

GPU training is not bit-deterministic here even eagerly (the hash grid's backward adds with
atomics), so "the same" is measured against that noise: from one saved state (parameters,
optimizer, scaler, random streams, data stream) one step is run eagerly twice and graphed once,
and the graphed update must be as close to the eager one as the two eager ones are to each other
(with a floor of 1e-3 of the update's norm, for when the eager ones happen to agree exactly).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from studio.cli.app import app
from studio.training.checkpoint import capture_rng_state, restore_rng_state
from studio.training.trainer import GRAPH_WARMUP_STEPS, Trainer

pytestmark = pytest.mark.gpu

ARGS = [
    "dreamfusion-primitives",
    "prompt=a red cube",
    "system.renderer.fixed_capacity=true",
    "trainer.precision=16-mixed",
    "trainer.enable_progress_bar=false",
    "data.n_test_views=2",
]


def run(root: Path, *overrides: str, command: str = "run"):
    args = [command, *ARGS, f"exp_root_dir={root}", *overrides]
    if command == "resume":
        args = ["resume", *overrides]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


class Snapshot:
    """Everything one training step reads or writes, copied *into* the same tensors on restore
    (a graph holds their addresses)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.tensors = self._tensors()
        self.saved = [t.detach().clone() for t in self.tensors]
        self.rng = capture_rng_state()
        self.data = trainer.data.state_dict()
        self.step = trainer.global_step

    def _tensors(self) -> list[torch.Tensor]:
        trainer = self.trainer
        out = list(trainer.params)
        for state in trainer.optimizer.state.values():
            out += [v for v in state.values() if torch.is_tensor(v)]
        scaler = trainer.scaler
        out += [t for t in (scaler._scale, scaler._growth_tracker) if t is not None]
        return out

    def restore(self) -> None:
        with torch.no_grad():
            for tensor, value in zip(self.tensors, self.saved, strict=True):
                tensor.copy_(value)
        restore_rng_state(self.rng)
        self.trainer.data.load_state_dict(self.data)
        self.trainer._set_step(self.step)


def one_step(trainer: Trainer, graphed: bool, train_step) -> tuple[float, torch.Tensor]:
    """One step through ``train_step`` (the trainer's own, not the test's wrapper around it)."""
    graphs = trainer.graphs
    if not graphed:
        trainer.graphs = None
    try:
        logs = train_step(trainer, trainer.params)
    finally:
        trainer.graphs = graphs
    params = torch.cat([p.detach().float().reshape(-1) for p in trainer.params])
    return float(logs["train/loss"]), params


def test_the_graphed_step_is_the_eager_step(tmp_path, monkeypatch):
    measured: dict[str, float] = {}
    original = Trainer._train_step
    check_at = GRAPH_WARMUP_STEPS + 3  # the step's graph was captured at the warm-up's end

    def train_step(self: Trainer, params):
        if self.global_step != check_at or self.graphs is None:
            return original(self, params)
        assert self.graphs.captures >= 1
        snapshot = Snapshot(self)
        start = torch.cat([p.detach().float().reshape(-1) for p in params])
        results = {}
        # graphed first: its graph_state then sizes the buffers from the same counts as the
        # run's own next step would (the eager steps queue theirs), so it replays
        replays_before = self.graphs.replays
        for name in ("graphed", "eager", "eager again"):
            snapshot.restore()
            results[name] = one_step(self, name == "graphed", original)
            torch.cuda.synchronize()
        replayed = self.graphs.replays - replays_before  # 1: the graphed step was a replay
        (loss_g, p_g), (loss_e, p_e), (loss_e2, p_e2) = (results[k] for k in results)
        update = (p_e - start).norm().item()
        measured.update(
            loss_eager=loss_e,
            loss_graphed=loss_g,
            loss_eager_again=loss_e2,
            update=update,
            eager_vs_eager=(p_e2 - p_e).norm().item(),
            graphed_vs_eager=(p_g - p_e).norm().item(),
            replayed=replayed,
        )
        snapshot.restore()
        return original(self, params)

    monkeypatch.setattr(Trainer, "_train_step", train_step)
    result = run(tmp_path, f"trainer.max_steps={check_at + 4}")
    assert "captured as CUDA graphs" in result.output
    print(measured)
    assert measured["replayed"] == 1
    assert measured["update"] > 0
    assert measured["loss_graphed"] == pytest.approx(measured["loss_eager"], rel=1e-3)
    floor = 1e-3 * measured["update"]
    assert measured["graphed_vs_eager"] <= max(3 * measured["eager_vs_eager"], floor)


def losses(run_dir: Path) -> dict[int, float]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(handle)}


def test_a_run_resumes_with_or_without_graphs(tmp_path):
    """A graphed run stopped at step 30 and resumed to 50, with graphs and without, tracks the
    uninterrupted graphed run as closely as two uninterrupted eager runs track each other."""
    roots = {name: tmp_path / name for name in ("whole", "eager", "stopped")}
    run(roots["whole"], "trainer.max_steps=50")
    run(roots["eager"], "trainer.max_steps=50", "trainer.cuda_graphs=false")
    run(roots["stopped"], "trainer.max_steps=30")
    (stopped,) = (roots["stopped"] / "dreamfusion-primitives").iterdir()
    curves = {}
    for graphs in ("true", "false"):
        copy = tmp_path / f"resumed-{graphs}"
        shutil.copytree(stopped, copy)
        result = run(
            tmp_path, str(copy), "trainer.max_steps=50", f"trainer.cuda_graphs={graphs}",
            command="resume",
        )  # fmt: skip
        said = "captured as CUDA graphs" if graphs == "true" else "cuda_graphs is false"
        assert said in result.output
        curves[graphs] = losses(copy)
    (whole,) = (roots["whole"] / "dreamfusion-primitives").iterdir()
    (eager,) = (roots["eager"] / "dreamfusion-primitives").iterdir()
    reference, noise_run = losses(whole), losses(eager)

    def gap(curve: dict[int, float]) -> float:
        steps = range(31, 51)
        return sum(abs(curve[s] - reference[s]) / abs(reference[s]) for s in steps) / len(steps)

    noise = gap(noise_run)
    print({"eager vs graphed, whole runs": noise, **{k: gap(v) for k, v in curves.items()}})
    for graphs, curve in curves.items():
        assert set(range(1, 51)) <= set(curve), graphs
        assert gap(curve) <= max(3 * noise, 0.02), graphs
