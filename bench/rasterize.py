"""Mesh rasterization and antialiasing: ms per 512x512 render, PyTorch rasterizer vs nvdiffrast.

    python bench/rasterize.py                 # CPU (torch backend); CUDA too when available
    python bench/rasterize.py --size 256 --subdivisions 5 --devices cpu

Scene: a unit icosphere (6 subdivisions: 81,920 faces) seen from ``batch`` cameras 3 units away
(fovy 40 degrees). A render is what ``nvdiff-rasterizer`` does per view: rasterize, interpolate
vertex normals (3 channels), antialias them. ``antialias`` times that antialias call alone (given the
raster and the image), ``aa+grad`` the same plus its backward pass to the image and the clip-space
positions. Each number is the median of several timed runs after warm-ups (CUDA synchronised). nvdiffrast is loaded through ``studio.rasterize.nvdiffrast_compat``;
its plugin build time is printed when it had to be built.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import trimesh
from timing import timed_ms

from studio.data import cameras as cam
from studio.rasterize import Rasterizer, make_rasterizer


def scene(subdivisions: int, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``(clip positions [B, V, 4], faces [F, 3], vertex normals [V, 3])``."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32, device=device)
    faces = torch.tensor(sphere.faces, dtype=torch.int64, device=device)
    azimuth = torch.linspace(0, 2 * math.pi, batch + 1, device=device)[:batch]
    position = cam.spherical_to_position(
        torch.full_like(azimuth, 0.3), azimuth, torch.full_like(azimuth, 3.0)
    )
    c2w = cam.look_at(
        position, torch.zeros_like(position), torch.tensor([0.0, 0.0, 1.0], device=device)
    )
    proj = cam.projection_matrix(torch.full_like(azimuth, 40 * math.pi / 180), 1.0)
    clip = torch.cat([vertices, torch.ones_like(vertices[:, :1])], -1) @ cam.mvp_matrix(
        c2w, proj
    ).transpose(1, 2)
    return clip.contiguous(), faces, vertices


def render_ms(
    rasterizer: Rasterizer, device: torch.device, size: int, subdivisions: int, batch: int
) -> tuple[float, float, float, float]:
    """``(rasterize only, antialias only, antialias + backward, rasterize + interpolate +
    antialias)`` in ms."""
    clip, faces, normals = scene(subdivisions, batch, device)
    iters = 20 if device.type == "cuda" else 3
    rast = rasterizer.rasterize(clip, faces, (size, size))
    image = rasterizer.interpolate(normals, rast, faces)
    weights = torch.rand_like(image)

    def rasterize() -> None:
        rasterizer.rasterize(clip, faces, (size, size))

    def antialias() -> None:
        rasterizer.antialias(image, rast, clip, faces)

    def antialias_backward() -> None:
        pos, color = clip.detach().requires_grad_(), image.detach().requires_grad_()
        out = rasterizer.antialias(color, rast, pos, faces)
        torch.autograd.grad((out * weights).sum(), [pos, color])

    def render() -> None:
        rast = rasterizer.rasterize(clip, faces, (size, size))
        image = rasterizer.interpolate(normals, rast, faces)
        rasterizer.antialias(image, rast, clip, faces)

    return (
        timed_ms(rasterize, device, 2, iters),
        timed_ms(antialias, device, 2, iters),
        timed_ms(antialias_backward, device, 2, iters),
        timed_ms(render, device, 2, iters),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--subdivisions", type=int, default=6)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--devices", nargs="+", default=None)
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    faces = 20 * 4**args.subdivisions
    print(f"icosphere {faces} faces, {args.size}x{args.size}; ms per batch (median)")
    header = (
        f"{'device':<7}{'backend':<12}{'batch':>6}{'rasterize':>12}{'antialias':>11}"
        f"{'aa+grad':>10}{'render':>10}{'vs nvdiffrast':>15}"
    )
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        backends = ["torch"]
        if device.type == "cuda":
            started = time.perf_counter()
            try:
                make_rasterizer("nvdiffrast", device)
                backends.append("nvdiffrast")
                print(f"(nvdiffrast ready in {time.perf_counter() - started:.1f} s)")
            except Exception as error:  # noqa: BLE001 - a benchmark reports and goes on
                print(f"(nvdiffrast unavailable: {error})")
        for batch in args.batches:
            rows = {
                backend: render_ms(
                    make_rasterizer(backend, device), device, args.size, args.subdivisions, batch
                )
                for backend in backends
            }
            for backend, (raster, aa, aa_grad, render) in rows.items():
                ratio = ""
                if "nvdiffrast" in rows:
                    ratio = f"{render / rows['nvdiffrast'][3]:.1f}x"
                print(
                    f"{name:<7}{backend:<12}{batch:>6}{raster:>12.2f}{aa:>11.2f}{aa_grad:>10.2f}"
                    f"{render:>10.2f}{ratio:>15}"
                )


if __name__ == "__main__":
    main()
