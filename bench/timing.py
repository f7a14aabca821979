"""The one timing helper of the benchmarks: median wall time per call, CUDA synchronised."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed_ms(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``iters`` calls after ``warmup`` calls
    (the device is synchronised before and after each timed call)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)
