"""The SJC training step vs its guidance alone (CUDA), and the step's peak VRAM.

Uses bench/dreamfusion.py's SD-2.1-base-*sized* pipeline (random weights, no download), the
``sjc`` preset as shipped (100^3 latent voxel grid, 512 marching steps across the box, 64x64
latent renders, nerfacc with every cell occupied, Adamax), eager, batch 1, 16-mixed autocast:

* ``guidance``: the SJC guidance call alone, forward + backward, on a random 4-channel 64x64
  latent render (no VAE encoder on this path: the render *is* the latents);
* ``full step``: the whole training step (update step, render, guidance, emptiness, backward,
  optimizer), as the trainer runs it;
* ``render``: the latent render alone (forward).

Usage: ``python bench/sjc.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from dreamfusion import build_sd21_sized, method_system, random_prompt_output, step_vs_guidance

PRESET = "sjc"
FIRST_STEP = 6000  # past the emptiness switch: its full weight


def make_guidance(path: Path):
    from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance

    return StableDiffusionGuidance(
        {
            "pretrained_model_name_or_path": str(path),
            "use_sjc": True,
            "min_step_percent": 0.01,
            "max_step_percent": 0.97,
        },
        device=torch.device("cuda"),
    )


def bench(path: Path, iters: int) -> dict[str, float]:
    cuda = torch.device("cuda")
    guidance = make_guidance(path)
    prompt_utils = random_prompt_output(cuda)
    cams = {
        "elevation": torch.full((1,), 10.0, device="cuda"),
        "azimuth": torch.zeros(1, device="cuda"),
        "camera_distances": torch.full((1,), 1.5, device="cuda"),
    }
    render = torch.randn(1, 64, 64, 4, device="cuda", requires_grad=True)

    def guidance_only() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            loss = guidance(render, prompt_utils, **cams, rgb_as_latents=True)["loss_sds"]
        loss.backward()

    from studio_sjc.system import SJCSystem

    system, data, optimizer = method_system(SJCSystem, PRESET, guidance, prompt_utils)
    return step_vs_guidance(system, data, optimizer, guidance_only, FIRST_STEP, iters)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/sjc.py: needs CUDA (full-sized UNet); skipped.")
        return 0
    iters = 10 if args.quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        r = bench(build_sd21_sized(Path(tmp)), iters)
    print(f"{PRESET}: {r}", file=sys.stderr, flush=True)
    print(
        f"\nSJC step on {torch.cuda.get_device_name()} (eager, batch 1, median ms, {iters} iters)"
    )
    print("| preset | render | guidance alone | full step | full / guidance | peak VRAM |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {PRESET} | {r['render']:.1f} | {r['guidance']:.1f} | {r['full']:.1f} | "
        f"{r['full'] / r['guidance']:.2f} | {r['peak']:.2f} GiB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
