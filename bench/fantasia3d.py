"""Fantasia3D's training steps vs the guidance alone (CUDA): both stages at 512x512.

Uses bench/dreamfusion.py's SD-2.1-base-*sized* pipeline (random weights, no download) and the
presets as shipped (eager, batch 1, 16-mixed autocast as they train), per row, in one run:

* ``fantasia3d (latents)``: the geometry stage before ``latent_steps``: the implicit SDF's surface
  by deformable marching tetrahedra (resolution 64), rasterized at 512x512 without colour; the
  guidance gets normals and silhouette as 4 latent channels (resized to 64x64, no VAE);
* ``fantasia3d (normals)``: the same stage after ``latent_steps``: the 512x512 normal map through
  the VAE encoder;
* ``fantasia3d-texture``: the fixed DMTet mesh (a sphere of radius 0.5: the benchmark has no
  geometry run to convert) with the PBR material (8 feature channels, split-sum lighting under the
  procedural sky, bump map in the UV tangent frame) at 512x512, through the VAE.

``guidance`` is the guidance call alone on a random input of the row's kind (forward + backward),
``full step`` the whole training step as the trainer runs it, ``render`` the render alone; peak
VRAM of the full step. Usage: ``python bench/fantasia3d.py [--quick]``.
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

#: row -> (preset, overrides, first step, guidance input channels, rgb_as_latents)
PRESETS = {
    "fantasia3d (latents)": ("fantasia3d", [], 100, 4, True),
    "fantasia3d (normals)": ("fantasia3d", [], 2000, 3, False),
    "fantasia3d-texture": ("fantasia3d-texture", ["system.geometry_convert_from="], 100, 3, False),
}


def make_system(preset: str, overrides: list[str], guidance, prompt_utils):
    from studio_fantasia3d.system import Fantasia3DSystem

    system, data, optimizer = method_system(
        Fantasia3DSystem, preset, guidance, prompt_utils, overrides
    )
    geometry = system.geometry
    if system.cfg.texture:
        with torch.no_grad():  # a sphere of radius 0.5
            geometry.sdf.copy_(geometry.grid_points().norm(dim=-1, keepdim=True) - 0.5)
    else:
        geometry.initialize_shape(n_steps=200)  # the preset's sphere, roughly
    print(f"{preset}: {geometry.isosurface().n_faces} faces", file=sys.stderr)
    return system, data, optimizer


def bench(path: Path, row: str, iters: int) -> dict[str, float]:
    preset, overrides, first_step, channels, as_latents = PRESETS[row]
    cuda = torch.device("cuda")
    guidance = make_guidance(path, "none", False)
    prompt_utils = random_prompt_output(cuda)
    render = torch.rand(1, 512, 512, channels, device="cuda", requires_grad=True)
    guidance_only = autocast_guidance_only(
        guidance, prompt_utils, render, 3.0, rgb_as_latents=as_latents
    )

    system, data, optimizer = make_system(preset, overrides, guidance, prompt_utils)
    return step_vs_guidance(system, data, optimizer, guidance_only, first_step, iters)


def main() -> int:
    return method_steps_main("fantasia3d.py", "Fantasia3D steps", PRESETS, bench)


if __name__ == "__main__":
    sys.exit(main())
