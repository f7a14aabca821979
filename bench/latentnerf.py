"""Latent-NeRF's and Sketch-Shape's training steps vs their guidance alone (CUDA), and peak VRAM.

Uses bench/dreamfusion.py's SD-2.1-base-*sized* pipeline (random weights, no download) and the
presets as shipped (hash-grid NeRF with 4 feature channels, 512 samples per ray, 64x64 renders),
eager, batch 1, 16-mixed autocast:

* ``latentnerf`` (latent stage): the render *is* the 64x64 latents; the guidance alone is SDS on a
  random 4-channel latent render (no VAE);
* ``latentnerf-refine``: RGB through ``sd-latent-adapter``; the guidance alone encodes a random
  64x64 RGB render through the VAE (at 512x512) and runs SDS;
* ``sketchshape`` (latent stage with the teddy guide): the latent step plus the guide-shape loss
  on every sample (its fields precomputed once, 128^3, read trilinearly).

``full step`` is the whole training step as the trainer runs it (render, guidance, regularisers,
shape loss, backward, optimizer); ``render`` the render alone (forward).

Usage: ``python bench/latentnerf.py [--quick]``.
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

#: preset -> (overrides, guidance input channels, rgb_as_latents)
PRESETS = {
    "latentnerf": ([], 4, True),
    "latentnerf-refine": (["system.weights="], 3, False),
    "sketchshape": (["system.guide_shape=teddy"], 4, True),
}
FIRST_STEP = 200  # past the learning rate's warm-up


def bench(path: Path, preset: str, iters: int) -> dict[str, float]:
    from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance
    from studio_latentnerf.system import LatentNeRFSystem

    overrides, channels, as_latents = PRESETS[preset]
    cuda = torch.device("cuda")
    guidance = StableDiffusionGuidance({"pretrained_model_name_or_path": str(path)}, device=cuda)
    prompt_utils = random_prompt_output(cuda)
    render = torch.rand(1, 64, 64, channels, device="cuda", requires_grad=True)
    guidance_only = autocast_guidance_only(
        guidance, prompt_utils, render, 1.5, rgb_as_latents=as_latents
    )

    system, data, optimizer = method_system(
        LatentNeRFSystem, preset, guidance, prompt_utils, overrides
    )
    system.guide_fields = system.build_guide_fields()
    return step_vs_guidance(system, data, optimizer, guidance_only, FIRST_STEP, iters)


def main() -> int:
    return method_steps_main("latentnerf.py", "Latent-NeRF steps", PRESETS, bench)


if __name__ == "__main__":
    sys.exit(main())
