"""Each NeRF method's training step eager against captured as CUDA graphs (Speed issue; CUDA).

For every preset whose step can be captured (``dreamfusion-sd``, ``magic3d-coarse-sd``,
``latentnerf``, ``latentnerf-refine``, ``sketchshape``), bench/dreamfusion.py's SD-2.1-base-*sized*
pipeline (random weights) is handed to the preset's system with
``system.renderer.fixed_capacity=true``, and the step is timed two ways in one interleaved loop
(back to back, as the training loop runs: ``--block`` steps queued without a sync): ``eager``
(bench/dreamfusion.py's ``full_step_of``: the trainer's eager step on the same fixed-capacity
buffers) and ``graphed`` (bench/dreamfusion_graph.py's ``GraphedStep``: the trainer's captured
step, host part plus one replay). Both start past the preset's warm-ups. ``--compile default``
compiles the guidance's UNet and VAE encoder (Inductor kernels) in both. Printed: median ms per
step and the minutes the preset's stage would take at that pace (its ``trainer.max_steps``).

Usage: ``python bench/method_graphs.py [--quick] [--compile default] [--presets a,b]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from dreamfusion import (
    build_sd21_sized,
    full_step_of,
    make_guidance,
    method_system,
    random_prompt_output,
)
from dreamfusion_graph import GraphedStep
from timing import interleaved_loop_ms

#: preset -> (system class path, overrides, first step: past its warm-ups)
PRESETS = {
    "dreamfusion-sd": ("studio_dreamfusion.system:DreamFusionSystem", [], 5000),
    "magic3d-coarse-sd": ("studio_magic3d.system:Magic3DSystem", [], 5000),
    "latentnerf": ("studio_latentnerf.system:LatentNeRFSystem", [], 200),
    "latentnerf-refine": ("studio_latentnerf.system:LatentNeRFSystem", ["system.weights="], 200),
    "sketchshape": (
        "studio_latentnerf.system:LatentNeRFSystem",
        ["system.guide_shape=teddy"],
        200,
    ),
}


def system_class(path: str) -> type:
    module, name = path.split(":")
    return getattr(__import__(module, fromlist=[name]), name)


def bench_preset(path: Path, preset: str, compile_mode: str, rounds: int, block: int) -> dict:
    from studio.config.resolve import load_experiment

    cls_path, overrides, first_step = PRESETS[preset]
    overrides = [*overrides, "system.renderer.fixed_capacity=true"]
    guidance = make_guidance(path, compile_mode, False)
    prompt_utils = random_prompt_output(torch.device("cuda"))
    system, data, optimizer = method_system(
        system_class(cls_path), preset, guidance, prompt_utils, overrides
    )
    if hasattr(system, "build_guide_fields"):
        system.guide_fields = system.build_guide_fields()
    scaler = torch.amp.GradScaler("cuda")
    step = [first_step]
    eager = full_step_of(system, data, optimizer, scaler, step)
    for _ in range(15):
        eager()
    graphed = GraphedStep(system, data, optimizer, scaler, step)
    for _ in range(10):
        graphed()
    times = interleaved_loop_ms(
        {"eager": eager, "graphed": graphed}, torch.device("cuda"), rounds, block=block
    )
    max_steps = load_experiment(preset, overrides, prompt="a bench").experiment.trainer.max_steps
    return {
        **times,
        "steps": max_steps,
        "captures": graphed.graphs.captures,
        "minutes": {k: v * max_steps / 60000.0 for k, v in times.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="8 rounds instead of 20")
    parser.add_argument("--compile", default="none", choices=["none", "default"])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma list")
    parser.add_argument("--block", type=int, default=5, help="steps queued per timed block")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/method_graphs.py: needs CUDA; skipped.")
        return 0
    presets = args.presets.split(",")
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        parser.error(f"--presets: {unknown} not in {list(PRESETS)}")
    rounds = 8 if args.quick else 20
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        for preset in presets:
            torch.cuda.empty_cache()
            rows[preset] = bench_preset(path, preset, args.compile, rounds, args.block)
            print(f"{preset}: {rows[preset]}", file=sys.stderr, flush=True)
    print(
        f"\nSteps eager vs captured on {torch.cuda.get_device_name()} (compile={args.compile}, "
        f"batch 1, median ms, {rounds} rounds of {args.block} back to back)"
    )
    print(
        "| preset | steps | eager ms | graphed ms | eager / graphed | minutes eager | minutes graphed |"
    )
    print("|---|---|---|---|---|---|---|")
    for preset, r in rows.items():
        print(
            f"| `{preset}` | {r['steps']} | {r['eager']:.1f} | {r['graphed']:.1f} | "
            f"{r['eager'] / r['graphed']:.2f} | {r['minutes']['eager']:.1f} | "
            f"{r['minutes']['graphed']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
