"""Magic3D training steps vs the guidance alone (CUDA): the coarse and the refine stage.

Uses bench/dreamfusion.py's SD-2.1-base-*sized* pipeline (random weights, no download) and
measures, per preset, in one run (eager, batch 1, 16-mixed autocast as the presets train):

* ``guidance``: the guidance call alone, forward + backward, on a random render of the preset's
  training size (64x64 coarse, 512x512 refine; both reach the UNet as 64x64 latents);
* ``full step``: the preset's whole training step (``magic3d-coarse-sd``: the NeRF at 64x64 with
  512 samples per ray; ``magic3d-refine-sd``: the DMTet grid's marching tetrahedra, nvdiffrast
  rasterization with antialiasing at 512x512, texture, guidance, normal consistency, backward,
  Adam);

and the peak VRAM of the full step. The refine stage's grid holds a sphere (the benchmark has no
coarse run to convert; the surface's size, not its shape, sets the cost). Usage:
``python bench/magic3d.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from dreamfusion import (
    build_sd21_sized,
    make_guidance,
    method_system,
    random_prompt_output,
    step_vs_guidance,
)

#: preset -> (the step the benchmark starts at, render size)
PRESETS = {"magic3d-coarse-sd": (5000, 64), "magic3d-refine-sd": (100, 512)}


def make_system(preset: str, guidance, prompt_utils):
    from studio_magic3d.system import Magic3DSystem

    overrides = ["system.geometry_convert_from="] if "refine" in preset else []
    system, data, optimizer = method_system(
        Magic3DSystem, preset, guidance, prompt_utils, overrides
    )
    if "refine" in preset:
        geometry = system.geometry
        with torch.no_grad():  # a sphere of radius 0.7 (in a radius-2 box)
            geometry.sdf.copy_(geometry.grid_points().norm(dim=-1, keepdim=True) - 0.7)
        print(f"{preset}: {geometry.isosurface().n_faces} faces", file=sys.stderr)
    return system, data, optimizer


def bench(path: Path, preset: str, iters: int) -> dict[str, float]:
    cuda = torch.device("cuda")
    first_step, size = PRESETS[preset]
    guidance = make_guidance(path, "none", False)
    prompt_utils = random_prompt_output(cuda)
    cams = {
        "elevation": torch.full((1,), 10.0, device="cuda"),
        "azimuth": torch.zeros(1, device="cuda"),
        "camera_distances": torch.full((1,), 1.8, device="cuda"),
    }
    render = torch.rand(1, size, size, 3, device="cuda", requires_grad=True)

    def guidance_only() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            loss = guidance(render, prompt_utils, **cams)["loss_sds"]
        loss.backward()

    system, data, optimizer = make_system(preset, guidance, prompt_utils)
    return step_vs_guidance(system, data, optimizer, guidance_only, first_step, iters)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/magic3d.py: needs CUDA (full-sized UNet); skipped.")
        return 0
    iters = 10 if args.quick else 30
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        for preset in PRESETS:
            torch.cuda.empty_cache()
            rows[preset] = bench(path, preset, iters)
            print(f"{preset}: {rows[preset]}", file=sys.stderr, flush=True)
    print(
        f"\nMagic3D steps on {torch.cuda.get_device_name()} (eager, batch 1, median ms, {iters} iters)"
    )
    print("| preset | render | guidance alone | full step | full / guidance | peak VRAM |")
    print("|---|---|---|---|---|---|")
    for preset, r in rows.items():
        print(
            f"| {preset} | {r['render']:.1f} | {r['guidance']:.1f} | {r['full']:.1f} | "
            f"{r['full'] / r['guidance']:.2f} | {r['peak']:.2f} GiB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
