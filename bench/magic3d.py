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

import sys
from pathlib import Path

import torch
from dreamfusion import (
    autocast_guidance_only,
    make_guidance,
    method_steps_main,
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
    render = torch.rand(1, size, size, 3, device="cuda", requires_grad=True)
    guidance_only = autocast_guidance_only(guidance, prompt_utils, render, 1.8)

    system, data, optimizer = make_system(preset, guidance, prompt_utils)
    return step_vs_guidance(system, data, optimizer, guidance_only, first_step, iters)


def main() -> int:
    return method_steps_main("magic3d.py", "Magic3D steps", PRESETS, bench)


if __name__ == "__main__":
    sys.exit(main())
