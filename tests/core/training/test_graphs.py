"""Captured training steps (studio.training.graphs), on the CPU: the keying, the static batch and
the fallbacks, with a stand-in for ``torch.cuda.CUDAGraph`` that replays by running the body
again and writing its results into the tensors the capture returned (as a graph does)."""

from __future__ import annotations

import pytest
import torch

from studio.errors import NotCapturable
from studio.training.graphs import (
    StepGraphs,
    capture_blockers,
    make_capturable,
    plain_optimizer_state,
    plain_scheduler_state,
)


class StandInGraph:
    """Replays by running the recorded body and copying its outputs into the captured ones."""

    def capture(self, fn):
        self.fn = fn
        self.outputs = {k: v.clone() for k, v in fn().items()}
        return self.outputs

    def replay(self):
        for key, value in self.fn().items():
            self.outputs[key].copy_(value)


def counting_body(calls: list):
    def body(batch):
        calls.append(batch["x"].clone())
        return {"y": batch["x"] * 2}

    return body


def graphs_of(body, **kwargs) -> StepGraphs:
    return StepGraphs(body, new_graph=StandInGraph, **kwargs)


def test_a_new_key_runs_the_body_then_captures_and_a_known_key_replays():
    calls: list = []
    emptied = []
    graphs = graphs_of(counting_body(calls), before_capture=lambda: emptied.append(1))
    out = graphs.run("a", {"x": torch.tensor([1.0])})
    assert out["y"].tolist() == [2.0]  # the eager run's result
    assert (graphs.captures, graphs.replays, len(emptied)) == (1, 0, 1)
    out = graphs.run("a", {"x": torch.tensor([5.0])})
    assert out["y"].tolist() == [10.0]  # the replay read the new batch from the static one
    assert (graphs.captures, graphs.replays) == (1, 1)
    graphs.run("b", {"x": torch.tensor([3.0])})
    assert (graphs.captures, graphs.replays) == (2, 1)
    # every call ran on the static batch (the tensors a graph reads), never on the caller's
    assert [c.item() for c in calls] == [1.0, 1.0, 5.0, 3.0, 3.0]


def test_replayed_outputs_are_the_same_tensors_overwritten():
    graphs = graphs_of(counting_body([]))
    graphs.run("a", {"x": torch.tensor([1.0])})
    first = graphs.run("a", {"x": torch.tensor([2.0])})
    held = first["y"]
    second = graphs.run("a", {"x": torch.tensor([4.0])})
    assert second["y"] is held and held.tolist() == [8.0]


def test_the_oldest_graph_is_dropped_beyond_max_graphs():
    graphs = graphs_of(counting_body([]), max_graphs=2)
    for key in ("a", "b", "a", "c"):  # "a" was used after "b": "b" is the oldest
        graphs.run(key, {"x": torch.tensor([1.0])})
    assert list(graphs.graphs) == ["a", "c"]
    graphs.run("b", {"x": torch.tensor([1.0])})
    assert graphs.captures == 4


@pytest.mark.parametrize(
    "second, says",
    [
        ({"x": torch.zeros(2)}, "'x' changed shape"),
        ({"x": torch.zeros(1, dtype=torch.float64)}, "'x' changed shape or type"),
        ({"x": torch.zeros(1), "z": torch.zeros(1)}, "keys changed"),
        ({"x": torch.zeros(1), "h": 32}, "'h' is not a tensor and changed"),
    ],
)
def test_a_batch_a_graph_cannot_read_is_refused(second, says):
    graphs = graphs_of(counting_body([]))
    first = {"x": torch.zeros(1)}
    if "h" in second:
        first["h"] = 64
    graphs.run("a", first)
    with pytest.raises(NotCapturable, match=says):
        graphs.run("a", second)


def test_capture_blockers_name_what_is_not_captured():
    param = torch.nn.Parameter(torch.zeros(2))
    adam = torch.optim.Adam([param], lr=0.1)
    cuda = torch.device("cuda")
    assert "device is cpu" in capture_blockers(
        torch.device("cpu"), adam, world_size=1, accumulate=1
    )
    assert "2 processes" in capture_blockers(cuda, adam, world_size=2, accumulate=1)
    assert "accumulate_grad_batches is 4" in capture_blockers(
        cuda, adam, world_size=1, accumulate=4
    )
    sgd = torch.optim.SGD([param], lr=0.1)
    assert "optimizer is SGD" in capture_blockers(cuda, sgd, world_size=1, accumulate=1)
    assert "not the fused one" in capture_blockers(cuda, adam, world_size=1, accumulate=1)
    adam.param_groups[0]["fused"] = True  # what build_optimizer gives on CUDA
    assert capture_blockers(cuda, adam, world_size=1, accumulate=1) is None


def test_checkpoints_hold_plain_learning_rates():
    param = torch.nn.Parameter(torch.zeros(2))
    adam = torch.optim.Adam([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(adam, lambda step: 0.5**step)
    eager_state = (adam.state_dict(), scheduler.state_dict())
    make_capturable(adam, torch.device("cpu"))
    group = adam.param_groups[0]
    assert isinstance(group["lr"], torch.Tensor) and group["capturable"]
    lr = group["lr"]
    adam.step()
    scheduler.step()  # fills the tensor in place (a graph holds its address)
    assert group["lr"] is lr and lr.item() == pytest.approx(0.05)
    optimizer_state = plain_optimizer_state(adam.state_dict())
    scheduler_state = plain_scheduler_state(scheduler.state_dict())
    assert optimizer_state["param_groups"][0]["lr"] == pytest.approx(0.05)
    assert optimizer_state["param_groups"][0]["capturable"] is False
    assert all(isinstance(v, float) for v in scheduler_state["_last_lr"])
    # the same keys and value types as an eager run writes
    assert optimizer_state["param_groups"][0].keys() == eager_state[0]["param_groups"][0].keys()
    for key, value in eager_state[1].items():
        assert type(scheduler_state[key]) is type(value), key


@pytest.mark.parametrize(
    "override, reason",
    [
        ("trainer.cuda_graphs=true", "the device is cpu, and CUDA graphs need a CUDA device"),
        ("trainer.cuda_graphs=false", "trainer.cuda_graphs is false"),
    ],
)
def test_the_run_log_says_why_steps_run_eagerly(toy_plugin, tmp_path, override, reason):
    from typer.testing import CliRunner

    from studio.cli.app import app

    args = ["run", "toy-fit", "prompt=x", f"exp_root_dir={tmp_path}", "trainer.max_steps=2"]
    result = CliRunner().invoke(
        app, [*args, "trainer.enable_progress_bar=false", "data.n_test_views=1", override]
    )
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "CUDA graphs" in line]
    assert said == [f"Training steps run eagerly (not as CUDA graphs): {reason}."]


def test_a_failed_capture_keeps_the_steps_eager_result_and_says_why():
    class FailingGraph(StandInGraph):
        def capture(self, fn):
            raise RuntimeError("operation not permitted when stream is capturing")

    calls: list = []
    graphs = StepGraphs(counting_body(calls), new_graph=FailingGraph)
    out = graphs.run("a", {"x": torch.tensor([2.0])})
    assert out["y"].tolist() == [4.0] and len(calls) == 1  # the step ran once, eagerly
    assert graphs.broken == (
        "capturing the step failed (operation not permitted when stream is capturing)"
    )
