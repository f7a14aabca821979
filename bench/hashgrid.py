"""Hash-grid encoding throughput in points per second.

    python bench/hashgrid.py                 # CPU; CUDA too when available; tcnn when importable
    python bench/hashgrid.py --sizes 16 18 20 --devices cuda

Config: threestudio's default grid (16 levels x 2 features, log2_hashmap_size 19, base resolution
16, per_level_scale 1.447269237440378), points uniform in [0, 1]^3. Columns: forward only;
forward + backward to the table; forward + backward to the table and the input points (what
analytic normals need). Each number is the median of several timed runs after warm-ups, with
``torch.cuda.synchronize`` around every run on CUDA.
"""

from __future__ import annotations

import argparse
import importlib.util

import torch
from timing import timed_ms
from torch import nn

from studio_dreamfusion.networks.hashgrid import HashGrid

CONFIG = {
    "n_levels": 16,
    "n_features_per_level": 2,
    "log2_hashmap_size": 19,
    "base_resolution": 16,
    "per_level_scale": 1.447269237440378,
}


def make_encodings(device: torch.device) -> list[tuple[str, nn.Module]]:
    encodings: list[tuple[str, nn.Module]] = [("torch", HashGrid(3, **CONFIG).to(device))]
    if device.type == "cuda" and importlib.util.find_spec("tinycudann") is not None:
        import tinycudann

        tcnn_config = {"otype": "HashGrid", **CONFIG}
        tcnn = tinycudann.Encoding(3, tcnn_config, dtype=torch.float32).to(device)
        encodings.append(("tinycudann", tcnn))
    return encodings


def bench(
    name: str, encoding: nn.Module, device: torch.device, n: int, warmup: int, iters: int
) -> list[str]:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, 3, device=device, generator=gen)
    x_grad = x.clone().requires_grad_(True)
    upstream = torch.randn(n, 32, device=device, generator=gen)
    params = list(encoding.parameters())

    def forward() -> None:
        with torch.no_grad():
            encoding(x)

    def forward_backward() -> None:
        out = encoding(x).float()
        torch.autograd.grad(out, params, upstream)

    def forward_backward_input() -> None:
        out = encoding(x_grad).float()
        torch.autograd.grad(out, [*params, x_grad], upstream)

    row = [device.type, name, f"2^{n.bit_length() - 1}"]
    for fn in (forward, forward_backward, forward_backward_input):
        seconds = timed_ms(fn, device, warmup, iters) / 1000.0
        row.append(f"{n / seconds / 1e6:,.2f} M")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 18], help="log2 of N")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu and cuda")
    parser.add_argument("--iters", type=int, default=None, help="timed runs (default 3/20)")
    args = parser.parse_args()
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    header = ["device", "backend", "N", "fwd pts/s", "fwd+bwd pts/s", "fwd+bwd+dx pts/s"]
    rows = [header]
    for device_name in devices:
        device = torch.device(device_name)
        iters = args.iters or (20 if device.type == "cuda" else 3)
        warmup = 5 if device.type == "cuda" else 1
        for name, encoding in make_encodings(device):
            for log2_n in args.sizes:
                rows.append(bench(name, encoding, device, 2**log2_n, warmup, iters))
                print(" | ".join(rows[-1]), flush=True)
    threads = torch.get_num_threads()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"\nHash grid throughput (torch {torch.__version__}, {threads} CPU threads{gpu})")
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
