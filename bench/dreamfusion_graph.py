"""The DreamFusion-SD training step captured whole as CUDA graphs, as the trainer captures it
(``trainer.cuda_graphs``): how fast, and is it the eager step? (Speed issue; CUDA only.)

Builds bench/dreamfusion.py's SD-2.1-base-*sized* pipeline (random weights) and the
``dreamfusion-sd`` preset's system from step 5000 with the renderer's ``fixed_capacity``
sampling, and runs its step through the trainer's pieces: :class:`studio.training.graphs.
StepGraphs` keyed by ``system.graph_key()`` (the material's shading drawn before the step, the
sample buffers' size, the hash grid's levels, the guidance's timestep range), the fused Adam made
capturable (learning rates as device tensors), loss weights as device tensors, a GradScaler
(16-mixed), autocast without its cast cache. The occupancy grid is updated in place between
replays every 16th step.

Timed (median ms, interleaved, the same run): the eager step (``eager``: nerfacc's marching, one
host sync per step; ``eager fixed``: on the fixed-capacity buffers), the graphed step
(``graphed``: host part, batch copy, replay) and the guidance alone, back to back (``--block
5``: the host queues steps without waiting, as the training loop does) and from idle
(``--block 1``); with ``--compile default`` the guidance's UNet and VAE encoder are
``torch.compile``d (Inductor kernels, no CUDA graphs of their own) in all three. That the
graphed step is the eager step is checked by ``tests/plugins/dreamfusion/
test_gpu_graphed_step.py``. With ``--profile``, the device time of each variant is then broken
down by GPU kernel (bench/kernel_profile.py: families and the busiest kernels per call). Usage:
``python bench/dreamfusion_graph.py [--quick] [--compile default] [--profile]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

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
from kernel_profile import print_kernel_table
from timing import interleaved_loop_ms

from studio.training.graphs import StepGraphs, make_capturable
from studio.training.transfer import to_device

CUDA = torch.device("cuda")


class GraphedStep:
    """The system's training step as the trainer runs it with ``trainer.cuda_graphs``."""

    def __init__(self, system, data, optimizer, scaler, step: list[int]) -> None:
        self.system, self.data, self.optimizer, self.scaler = system, data, optimizer, scaler
        self.step = step
        blockers = system.graph_blockers()
        if blockers:
            raise SystemExit(f"the step cannot be captured: {'; '.join(blockers)}")
        make_capturable(optimizer, CUDA)
        system.use_graph_weights(CUDA)
        self.graphs = StepGraphs(
            self._body, before_capture=lambda: optimizer.zero_grad(set_to_none=True)
        )

    def _body(self, batch) -> dict[str, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
            loss = self.system.training_step(batch)["loss"]
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": loss.detach()}

    def __call__(self) -> torch.Tensor:
        system = self.system
        batch = to_device(self.data.train_batch(), CUDA)
        system.do_update_step(0, self.step[0])  # occupancy grid (in place), schedules
        system.global_step = self.step[0]
        system.refresh_loss_weights()
        outputs = self.graphs.run(system.graph_key(), batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.step[0] += 1
        return outputs["loss"]


def build(path: Path, compile_mode: str = "none"):
    guidance = make_guidance(path, compile_mode, True)
    prompt_utils = random_prompt_output(CUDA)
    system, data, optimizer = make_system(guidance, prompt_utils, 1)
    system.renderer.cfg.fixed_capacity = True
    return system, data, optimizer, guidance, prompt_utils


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 rounds instead of 30")
    parser.add_argument(
        "--compile", default="none", choices=["none", "default"], help="the guidance's compile"
    )
    parser.add_argument("--profile", action="store_true", help="then kernels per variant")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/dreamfusion_graph.py: needs CUDA; skipped.")
        return 0
    rounds = 10 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        system, data, optimizer, guidance, prompt_utils = build(path, args.compile)
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

        def eager_unfixed() -> torch.Tensor:  # nerfacc's marching, its one host sync per step
            system.renderer.cfg.fixed_capacity = False
            try:
                return eager()
            finally:
                system.renderer.cfg.fixed_capacity = True

        for _ in range(3):
            eager_unfixed()
        fns = {
            "guidance": guidance_only,
            "eager": eager_unfixed,
            "eager fixed": eager,
            "graphed": graphed,
        }
        for block in (1, 5):
            times = interleaved_loop_ms(fns, torch.device("cuda"), rounds, block=block)
            label = "back to back" if block > 1 else "from idle"
            print(
                f"{torch.cuda.get_device_name()} compile={args.compile} {label}: guidance "
                f"{times['guidance']:.1f} ms, eager step {times['eager']:.1f} ms (fixed capacity "
                f"{times['eager fixed']:.1f} ms), graphed step {times['graphed']:.1f} ms "
                f"(graphed / guidance {times['graphed'] / times['guidance']:.2f}); "
                f"{graphed.graphs.captures} captures, buffers "
                f"{system.renderer.sample_capacity.capacity}"
            )
        if args.profile:
            for name, fn in fns.items():
                print_kernel_table(f"{name} (compile={args.compile})", fn, calls=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
