"""The training step as CUDA graphs (``trainer.cuda_graphs``): one launch per step instead of
thousands, so host noise no longer sets the step time.

A CUDA graph replays the kernels it recorded, on the tensors it recorded them on, with the Python
values they were launched with. A step can be captured when everything that varies per step is
either a device tensor updated in place outside the graph (the camera batch, copied into the
static batch; the learning rates, 0-dim tensors the scheduler fills; the loss weights; the random
noise and timesteps, drawn inside the graph from PyTorch's graph-safe generator) or a host
decision drawn *before* the step and named in the system's :meth:`graph_key` (a random shading
choice, a buffer size, a schedule's phase). Each distinct key is captured once (after one eager
run of the step, which is that step's real work) and replayed afterwards; a new key value
captures a new graph, the oldest of more than ``max_graphs`` is dropped.

What cannot be captured falls back to the eager step, with one log line saying why: the CPU, a
component that does not declare its host state (:meth:`studio.base.Updateable.graph_state`), an
optimizer without a capturable step, gradient accumulation, several processes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

from studio.errors import NotCapturable, one_line

#: Optimizers whose step can be captured (their fused / capturable CUDA implementation reads the
#: learning rate and the step count from device tensors and never waits for the GPU).
CAPTURABLE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)


def capture_blockers(
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    *,
    world_size: int,
    accumulate: int,
) -> str | None:
    """Why the trainer's step cannot be captured here (one clause), or None when it can be.

    The system's own reasons come from its :meth:`~studio.systems.base.BaseSystem.graph_blockers`."""
    if device.type != "cuda":
        return f"the device is {device.type}, and CUDA graphs need a CUDA device"
    if world_size > 1:
        return f"the run has {world_size} processes (gradients are averaged between them eagerly)"
    if accumulate > 1:
        return f"trainer.accumulate_grad_batches is {accumulate} (only 1 is captured)"
    if not isinstance(optimizer, CAPTURABLE_OPTIMIZERS):
        return f"the optimizer is {type(optimizer).__name__} (Adam and AdamW have capturable steps)"
    if not all(group.get("fused") for group in optimizer.param_groups):
        return "the optimizer is not the fused one (its args set fused or foreach)"
    return None


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Learning rates as 0-dim device tensors (the scheduler fills them in place) and the
    optimizer's ``capturable`` flag on. Run after a checkpoint's optimizer state is loaded."""
    for group in optimizer.param_groups:
        lr = group["lr"]
        value = float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)
        group["lr"] = torch.tensor(value, dtype=torch.float32, device=device)
        group["capturable"] = True


def plain_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer ``state_dict`` with tensor learning rates and ``capturable`` flags as an
    eager run writes them (numbers, False): checkpoints read the same with or without graphs."""
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        for key in ("lr", "initial_lr"):
            if isinstance(group.get(key), torch.Tensor):
                group[key] = float(group[key].item())
        if "capturable" in group:
            group["capturable"] = False
        groups.append(group)
    return {**state, "param_groups": groups}


def plain_scheduler_state(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler ``state_dict`` with its tensor learning rates (``_last_lr``, ``base_lrs``)
    as numbers, as an eager run writes them."""

    def plain(value: Any) -> Any:
        return float(value.item()) if isinstance(value, torch.Tensor) else value

    return {
        key: [plain(v) for v in value] if key in ("_last_lr", "base_lrs") else value
        for key, value in state.items()
    }


class StepGraphs:
    """The step ``body(batch) -> {name: tensor}`` captured once per host-state key and replayed.

    :meth:`run` copies ``batch`` into the static batch (the tensors a graph reads), captures the
    body for a key it has not seen and replays the key's graph; it returns the graph's output
    tensors, which the next replay overwrites (copy them, or read them, before the next step).
    ``before_capture`` runs right before a capture (the trainer empties the gradients there, so
    the graph owns the tensors its backward writes)."""

    def __init__(
        self,
        body: Callable[[dict[str, Any]], dict[str, torch.Tensor]],
        *,
        before_capture: Callable[[], None] = lambda: None,
        max_graphs: int = 4,
        new_graph: Callable[[], Any] | None = None,
    ) -> None:
        self.body = body
        self.before_capture = before_capture
        self.max_graphs = max_graphs
        self.new_graph = new_graph or torch.cuda.CUDAGraph
        self.graphs: OrderedDict[Hashable, tuple[Any, dict[str, torch.Tensor]]] = OrderedDict()
        self.static: dict[str, Any] | None = None
        self.captures = 0
        self.replays = 0
        #: Why a capture failed (the step itself ran eagerly); None while captures work.
        self.broken: str | None = None

    def _fill_static(self, batch: dict[str, Any]) -> None:
        """Copy ``batch`` into the static batch (built from the first one). Its tensors must keep
        their shapes and its other entries their values: a graph baked them in."""
        if self.static is None:
            self.static = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}
            return
        if batch.keys() != self.static.keys():
            raise NotCapturable(
                f"the training batch's keys changed ({sorted(self.static)} -> {sorted(batch)})"
            )
        for key, value in batch.items():
            held = self.static[key]
            if torch.is_tensor(value):
                if value.shape != held.shape or value.dtype != held.dtype:
                    raise NotCapturable(
                        f"the training batch's {key!r} changed shape or type ({tuple(held.shape)} "
                        f"{held.dtype} -> {tuple(value.shape)} {value.dtype})"
                    )
                held.copy_(value, non_blocking=True)
            elif not _same(value, held):
                raise NotCapturable(f"the training batch's {key!r} is not a tensor and changed")

    def run(self, key: Hashable, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One step under host state ``key``: the eager body plus a capture for a new key (the
        capture itself runs nothing), else one replay."""
        self._fill_static(batch)
        assert self.static is not None
        if key in self.graphs:
            graph, outputs = self.graphs[key]
            self.graphs.move_to_end(key)
            graph.replay()
            self.replays += 1
            return outputs
        outputs = self.body(self.static)  # this step's work, and every lazy set-up done
        try:
            self._capture(key)
        except RuntimeError as exc:  # e.g. an operation that waits for the GPU
            self.broken = f"capturing the step failed ({one_line(exc, 200)})"
        return outputs

    def _capture(self, key: Hashable) -> None:
        while len(self.graphs) >= self.max_graphs:
            self.graphs.popitem(last=False)
        self.before_capture()
        graph = self.new_graph()
        if isinstance(graph, torch.cuda.CUDAGraph):
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                outputs = self.body(self.static)
        else:  # a stand-in (tests): it records the body itself
            outputs = graph.capture(lambda: self.body(self.static))
        self.graphs[key] = (graph, outputs)
        self.captures += 1


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - anything that cannot be compared counts as changed
        return False
