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

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from dreamfusion import build_sd21_sized, method_system, random_prompt_output, step_vs_guidance

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
    cams = {
        "elevation": torch.full((1,), 10.0, device="cuda"),
        "azimuth": torch.zeros(1, device="cuda"),
        "camera_distances": torch.full((1,), 1.5, device="cuda"),
    }
    render = torch.rand(1, 64, 64, channels, device="cuda", requires_grad=True)

    def guidance_only() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            out = guidance(render, prompt_utils, **cams, rgb_as_latents=as_latents)
        out["loss_sds"].backward()

    system, data, optimizer = method_system(
        LatentNeRFSystem, preset, guidance, prompt_utils, overrides
    )
    system.guide_fields = system.build_guide_fields()
    return step_vs_guidance(system, data, optimizer, guidance_only, FIRST_STEP, iters)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/latentnerf.py: needs CUDA (full-sized UNet); skipped.")
        return 0
    iters = 10 if args.quick else 30
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        for preset in PRESETS:
            results[preset] = bench(path, preset, iters)
            print(f"{preset}: {results[preset]}", file=sys.stderr, flush=True)
    print(
        f"\nLatent-NeRF steps on {torch.cuda.get_device_name()} "
        f"(eager, batch 1, median ms, {iters} iters)"
    )
    print("| preset | render | guidance alone | full step | full / guidance | peak VRAM |")
    print("|---|---|---|---|---|---|")
    for preset, r in results.items():
        print(
            f"| {preset} | {r['render']:.1f} | {r['guidance']:.1f} | {r['full']:.1f} | "
            f"{r['full'] / r['guidance']:.2f} | {r['peak']:.2f} GiB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
