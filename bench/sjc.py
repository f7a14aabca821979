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

import sys
from pathlib import Path

import torch
from dreamfusion import (
    autocast_guidance_only,
    method_steps_main,
    method_system,
    random_prompt_output,
    step_vs_guidance,
)

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
    render = torch.randn(1, 64, 64, 4, device="cuda", requires_grad=True)
    guidance_only = autocast_guidance_only(guidance, prompt_utils, render, 1.5, rgb_as_latents=True)

    from studio_sjc.system import SJCSystem

    system, data, optimizer = method_system(SJCSystem, PRESET, guidance, prompt_utils)
    return step_vs_guidance(system, data, optimizer, guidance_only, FIRST_STEP, iters)


def main() -> int:
    return method_steps_main(
        "sjc.py", "SJC step", [PRESET], lambda path, _preset, iters: bench(path, iters)
    )


if __name__ == "__main__":
    sys.exit(main())
