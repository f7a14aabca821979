"""The one timing helper of the benchmarks: median wall time per call, CUDA synchronised."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed_ms(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``iters`` calls after ``warmup`` calls
    (the device is synchronised before and after each timed call)."""
    return interleaved_ms({"fn": fn}, device, warmup, iters)["fn"]


def interleaved_ms(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, iters: int
) -> dict[str, float]:
    """Median ms per call of each of ``fns``, timed in turn within each round (A, B, A, B, ...),
    so that a drift of the machine's speed during the run affects all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    return interleaved_loop_ms(fns, device, iters, block=1)


def interleaved_loop_ms(
    fns: dict[str, Callable[[], object]], device: torch.device, rounds: int, block: int = 5
) -> dict[str, float]:
    """Median ms per call of each of ``fns`` run ``block`` times back to back with no sync in
    between (a training loop: the host issues the next call while the device finishes the last),
    blocks of the functions alternating for ``rounds`` rounds."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(block):
                fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            samples[name].append((time.perf_counter() - start) * 1000.0 / block)
    return {name: statistics.median(values) for name, values in samples.items()}
