"""The DreamFusion-SD training step captured whole as CUDA graphs: is it possible, how fast, and
is it the eager step? (Speed issue, first measurement; CUDA only.)

Builds bench/dreamfusion.py's SD-2.1-base-*sized* pipeline (random weights) and the
``dreamfusion-sd`` preset's system from step 5000 (past the warm-ups, so the hash grid's levels,
the ambient-only phase and the loss weights no longer change), with the renderer's
``fixed_capacity`` sampling (no host sync), the fused Adam made ``capturable`` and a GradScaler
(16-mixed). What varies per step is handled outside the graphs:

* the camera batch is copied into fixed input tensors before each replay;
* the material's random shading (albedo / diffuse / textureless) is drawn before the step and
  picks one of up to three graphs (one per shading, each captured on first use, own memory pool);
* the sample buffers' size is part of a graph's key: when the buffers grow (an overflow, read one
  step late), the next step is captured again;
* every 16th step the occupancy grid is updated in place, between replays.

Timed (median ms, interleaved, the same run): the eager step (``full``), the graphed step
(``graphed``: batch copy + replay) and the guidance alone, back to back (``--block 5``: the host
queues steps without waiting, as the training loop does) and from idle (``--block 1``). With
``--check``: one eager step and one graphed step from the same state and seed, their losses and
parameter updates compared. Usage: ``python bench/dreamfusion_graph.py [--quick] [--check]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from dreamfusion import (
    FIRST_STEP,
    build_sd21_sized,
    full_step_of,
    guidance_only_of,
    make_guidance,
    make_system,
    random_prompt_output,
)
from timing import interleaved_loop_ms


class GraphedStep:
    """The system's training step as CUDA graphs keyed by what the host decides per step."""

    def __init__(self, system, data, optimizer, scaler, step: list[int]) -> None:
        self.system, self.data, self.optimizer, self.scaler = system, data, optimizer, scaler
        self.step = step
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.static: dict[str, torch.Tensor] | None = None
        self.captures = 0
        renderer = system.renderer
        self.capacity = renderer.sample_capacity
        self._record = self.capacity.record  # the real one: runs after each replay
        self.capacity.record = self._hold_counts  # inside a step: keep the counts tensor only
        self.capacity.update = self._no_update  # inside a step: sizes change between replays
        self.material = system.material
        self._choose = self.material.choose_shading
        self.shading = "albedo"
        self.material.choose_shading = lambda: self.shading

    def _hold_counts(self, counts: torch.Tensor) -> None:
        self.counts = counts

    @staticmethod
    def _no_update(wait: bool = False) -> bool:
        return False

    def _batch(self) -> dict[str, Any]:
        from studio.training.trainer import to_device

        batch = to_device(self.data.train_batch(), torch.device("cuda"))
        if self.static is None:
            self.static = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}
        else:
            for key, value in batch.items():
                if torch.is_tensor(value):
                    self.static[key].copy_(value, non_blocking=True)
        return self.static

    def _body(self) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
            loss = self.system.training_step(self.static)["loss"]
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    def _capture(self, key: tuple) -> None:
        """One eager run of the body first (a real step: whatever this key's path initialises
        lazily, e.g. a constant copied to the GPU, must not happen during capture), then the
        capture, into its own memory pool."""
        self._body()
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = self._body()
        self.graphs[key] = (graph, loss, self.counts)
        self.captures += 1

    def __call__(self) -> torch.Tensor:
        """One training step: host decisions, batch copy, (capture and) replay."""
        system = self.system
        system.do_update_step(0, self.step[0])  # occupancy grid (in place), schedules
        system.global_step = self.step[0]
        self.shading = self._choose()
        if self.capacity.__class__.update(self.capacity):
            print(f"graphed: buffers grown to {self.capacity.capacity}", file=sys.stderr)
        self._batch()
        key = (self.shading, self.capacity.capacity)
        if key not in self.graphs:
            self._capture(key)
        graph, loss, counts = self.graphs[key]
        graph.replay()
        self._record(counts)
        self.step[0] += 1
        return loss


def build(path: Path, fixed: bool = True):
    cuda = torch.device("cuda")
    guidance = make_guidance(path, "none", True)
    prompt_utils = random_prompt_output(cuda)
    system, data, optimizer = make_system(guidance, prompt_utils, 1)
    system.renderer.cfg.fixed_capacity = fixed
    for group in optimizer.param_groups:
        group["capturable"] = True
    return system, data, optimizer, guidance, prompt_utils


def snapshot(system, optimizer) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Copies of the parameters and the optimizer's state tensors."""
    params = [p.detach().clone() for p in system.parameters()]
    states = [
        {k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
        for p in system.parameters()
    ]
    return params, states


def restore(system, optimizer, saved) -> None:
    """Copy a :func:`snapshot` back *into* the same tensors (the graphs hold their addresses;
    ``load_state_dict`` would put new tensors in the optimizer's state)."""
    params, states = saved
    with torch.no_grad():
        for p, value, state in zip(system.parameters(), params, states, strict=True):
            p.copy_(value)
            for key, tensor in state.items():
                optimizer.state[p][key].copy_(tensor)


def check(path: Path) -> None:
    """An eager step and a graphed step from the same state, batch, shading and seed."""
    system, data, optimizer, _, _ = build(path)
    scaler = torch.amp.GradScaler("cuda")
    eager = full_step_of(system, data, optimizer, scaler, [FIRST_STEP])
    for _ in range(20):  # warm up: grid filled, buffers sized, the scaler's scale created
        eager()
    graphed = GraphedStep(system, data, optimizer, scaler, [FIRST_STEP + 20])
    graphed._choose = lambda: "diffuse"
    graphed()  # captures the diffuse graph (after one eager run of its body)
    torch.cuda.synchronize()
    saved, scale = snapshot(system, optimizer), scaler.get_scale()
    batch = data.train_batch()
    data.train_batch = lambda: batch  # both steps see this batch
    system.material.choose_shading = lambda: "diffuse"
    results = {}
    for name in ("eager", "graphed"):
        restore(system, optimizer, saved)
        scaler.update(scale)
        step = [FIRST_STEP + 101]  # not a grid-update step
        torch.cuda.manual_seed(1234)
        if name == "eager":
            loss = full_step_of(system, data, optimizer, scaler, step)()
        else:
            graphed.step = step
            loss = graphed()
        torch.cuda.synchronize()
        params = torch.cat([p.detach().float().reshape(-1) for p in system.parameters()])
        results[name] = (float(loss), params)
    (loss_e, p_e), (loss_g, p_g) = results["eager"], results["graphed"]
    start = torch.cat([p.float().reshape(-1) for p in saved[0]])
    print(
        f"check: loss eager {loss_e:.6f} graphed {loss_g:.6f}; parameters max |eager - graphed| "
        f"{(p_e - p_g).abs().max().item():.3e}, the eager update's max "
        f"{(p_e - start).abs().max().item():.3e}, the graphed update's max "
        f"{(p_g - start).abs().max().item():.3e}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 rounds instead of 30")
    parser.add_argument("--check", action="store_true", help="graphed step == eager step?")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/dreamfusion_graph.py: needs CUDA; skipped.")
        return 0
    rounds = 10 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        if args.check:
            check(path)
        system, data, optimizer, guidance, prompt_utils = build(path)
        scaler = torch.amp.GradScaler("cuda")
        step = [FIRST_STEP]
        eager = full_step_of(system, data, optimizer, scaler, step)
        for _ in range(20):
            eager()
        graphed = GraphedStep(system, data, optimizer, scaler, step)
        for _ in range(10):
            graphed()
        guidance_only = guidance_only_of(guidance, prompt_utils, 1)
        for _ in range(5):
            guidance_only()
        fns = {"guidance": guidance_only, "eager": eager, "graphed": graphed}
        for block in (1, 5):
            times = interleaved_loop_ms(fns, torch.device("cuda"), rounds, block=block)
            label = "back to back" if block > 1 else "from idle"
            print(
                f"{torch.cuda.get_device_name()} {label}: guidance {times['guidance']:.1f} ms, "
                f"eager step {times['eager']:.1f} ms, graphed step {times['graphed']:.1f} ms "
                f"(graphed / guidance {times['graphed'] / times['guidance']:.2f}); "
                f"{graphed.captures} captures, buffers {graphed.capacity.capacity}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
