"""Rendering-stack throughput: hash grid points/s and NeRF render+backward ms/iteration.

    python bench/render.py            # CPU always; CUDA (torch and nerfacc paths) when available

Setup mirrors the dreamfusion-sd preset: implicit-volume (16-level hash grid, log2 table 19,
analytic normals), diffuse-with-point-light material, neural environment map, 64x64 rays from
the random-camera sampler, radius 2, 512 samples per ray. The occupancy grid of the nerfacc path
is first filled the way training fills it (257 update steps on the initial blob density).
"""

from __future__ import annotations

import argparse

import torch
from timing import timed_ms

from studio.data.random_camera import RandomCameraDataModule
from studio_dreamfusion.backgrounds import NeuralEnvironmentMap
from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
from studio_dreamfusion.materials import DiffuseWithPointLight
from studio_dreamfusion.networks import defaults
from studio_dreamfusion.networks.encodings import build_encoding
from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer


def hashgrid_row(device: torch.device, n_points: int) -> tuple[str, float, float]:
    encoding = build_encoding(3, {**defaults.hash_grid(), "backend": "torch"}).to(device)
    points = torch.rand(n_points, 3, device=device)

    def forward() -> None:
        with torch.no_grad():
            encoding(points)

    def forward_backward() -> None:
        encoding(points).sum().backward()

    iters = 10 if device.type == "cuda" else 3
    fwd = timed_ms(forward, device, 2, iters)
    fwd_bwd = timed_ms(forward_backward, device, 2, iters)
    return f"hash grid {n_points} pts", n_points / fwd * 1e3, n_points / fwd_bwd * 1e3


def build_renderer(
    device: torch.device,
    backend: str,
    samples: int,
    grid_backend: str = "auto",
    explicit_normals: bool = True,
) -> NeRFVolumeRenderer:
    geometry = ImplicitVolume(
        {
            "radius": 2.0,
            "normal_type": "analytic",
            "pos_encoding_config": {**defaults.hash_grid(), "backend": grid_backend},
        }
    )
    geometry.explicit_analytic_normals = explicit_normals
    material = DiffuseWithPointLight({"ambient_only_steps": 0})
    background = NeuralEnvironmentMap({})
    renderer = NeRFVolumeRenderer(
        {"radius": 2.0, "num_samples_per_ray": samples, "backend": backend},
        geometry=geometry,
        material=material,
        background=background,
    )
    for module in (geometry, material, background, renderer):
        module.to(device).train()
    material.do_update_step(0, 5000)
    if renderer.estimator is not None:
        for step in range(0, 257, 16):
            renderer.update_step(0, step)
    return renderer


def render_ms(
    device: torch.device,
    backend: str,
    batch_size: int,
    samples: int,
    iters: int,
    grid_backend: str = "auto",
    explicit_normals: bool = True,
) -> float:
    torch.manual_seed(0)
    renderer = build_renderer(device, backend, samples, grid_backend, explicit_normals)
    data = RandomCameraDataModule(
        {
            "batch_size": batch_size,
            "height": 64,
            "width": 64,
            "camera_distance_range": [1.5, 2.0],
            "elevation_range": [-10, 45],
        }
    )
    params = [
        p
        for m in (renderer.geometry, renderer.material, renderer.background)
        for p in m.parameters()
    ]

    def step() -> None:
        batch = {
            k: v.to(device) if torch.is_tensor(v) else v for k, v in data.train_batch().items()
        }
        out = renderer(**batch)
        loss = out["comp_rgb"].mean() + out["opacity"].mean()
        loss.backward()
        for p in params:
            p.grad = None

    return timed_ms(step, device, 3, iters)


def normals_table(device: torch.device, samples: int) -> None:
    """Render + backward with analytic normals: PyTorch grid ops or the fused Triton kernels,
    normals by autograd's double backward or carried forward explicitly (nerfacc path)."""
    from studio.backends import CONCERNS, usable

    march = "nerfacc" if usable(CONCERNS["ray-marching"][0], cuda=True) else "torch"
    grids = ["torch"] + (["triton"] if usable(CONCERNS["hash-grid"][1], cuda=True) else [])
    print(f"\n| grid kernels | analytic normals | batch | ms/iteration ({march}, {samples}/ray) |")
    print("|---|---|---|---|")
    baseline: dict[int, float] = {}
    for grid in grids:
        for explicit in (False, True):
            for batch_size in (1, 4):
                ms = render_ms(device, march, batch_size, samples, 10, grid, explicit)
                baseline.setdefault(batch_size, ms)
                how = "explicit (first order)" if explicit else "double backward"
                speedup = baseline[batch_size] / ms
                print(f"| {grid} | {how} | {batch_size} | {ms:.1f} (x{speedup:.2f}) |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print("| device | hash grid | points/s forward | points/s forward+backward |")
    print("|---|---|---|---|")
    for device in devices:
        n = 2**18 if device.type == "cuda" else 2**16
        name, fwd, fwd_bwd = hashgrid_row(device, n)
        print(f"| {device.type} | {name} | {fwd:,.0f} | {fwd_bwd:,.0f} |")
    print()
    print("| device | path | batch | samples/ray | ms/iteration (render+backward, 64x64) |")
    print("|---|---|---|---|---|")
    rows = []
    for device in devices:
        backends = ["torch"]
        if device.type == "cuda":
            from studio.backends import CONCERNS, usable

            if usable(CONCERNS["ray-marching"][0], cuda=True):
                backends.append("nerfacc")
        samples = args.samples if device.type == "cuda" else 64
        for backend in backends:
            for batch_size in (1, 4):
                if device.type == "cpu" and batch_size == 4:
                    continue
                ms = render_ms(
                    device, backend, batch_size, samples, 10 if device.type == "cuda" else 2
                )
                rows.append((device.type, backend, batch_size, ms))
                print(f"| {device.type} | {backend} | {batch_size} | {samples} | {ms:.1f} |")
    if torch.cuda.is_available():
        normals_table(torch.device("cuda"), args.samples)
    cuda_rows = {(b, n): ms for d, b, n, ms in rows if d == "cuda"}
    for batch_size in (1, 4):
        if ("torch", batch_size) in cuda_rows and ("nerfacc", batch_size) in cuda_rows:
            ratio = cuda_rows[("torch", batch_size)] / cuda_rows[("nerfacc", batch_size)]
            print(f"\nnerfacc vs torch path, batch {batch_size}: {ratio:.1f}x faster per iteration")


if __name__ == "__main__":
    main()
