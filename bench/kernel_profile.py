"""Which GPU kernels a step spends its device time in (CUDA; the benches' profiling helper).

:func:`kernel_times` runs a callable under ``torch.profiler`` (CUDA activity only: kernels,
including those replayed from CUDA graphs, and memory copies) and sums each kernel name's device
time; :func:`print_kernel_table` prints the busiest ones per call, each with a coarse
``family`` (:func:`kernel_family`) so that a table says at a glance whether convolutions, GEMMs,
attention, elementwise/Triton work or hash-grid and marching kernels dominate. The device time
per call is the sum of the kernels' durations: the step's cost on an idle-free GPU, whatever the
host does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

#: Substrings of kernel names -> family (first match wins; lower-case comparison).
FAMILIES = (
    ("flash", "attention"),
    ("fmha", "attention"),
    ("attention", "attention"),
    ("conv", "convolution"),
    ("implicit_gemm", "convolution"),
    ("fprop", "convolution"),
    ("dgrad", "convolution"),
    ("wgrad", "convolution"),
    ("gemm", "gemm"),
    ("cutlass", "gemm"),
    ("sm90_xmma", "gemm"),
    ("nvjet", "gemm"),
    ("triton", "triton (fused)"),
    ("memcpy", "copy"),
    ("memset", "copy"),
    ("reduce", "reduction"),
    ("scan", "scan/sort"),
    ("sort", "scan/sort"),
    ("elementwise", "elementwise"),
    ("vectorized", "elementwise"),
    ("index", "gather/scatter"),
    ("scatter", "gather/scatter"),
    ("gather", "gather/scatter"),
    ("norm", "normalisation"),
)


def kernel_family(name: str) -> str:
    """A kernel's family by substrings of its name (:data:`FAMILIES`), else ``other``."""
    lowered = name.lower()
    return next((family for key, family in FAMILIES if key in lowered), "other")


@dataclass(frozen=True)
class KernelTime:
    name: str
    ms_per_call: float
    launches_per_call: float


def kernel_times(fn: Callable[[], object], calls: int) -> tuple[float, list[KernelTime]]:
    """``(device ms per call, kernels by device time per call, largest first)`` over ``calls``
    calls of ``fn`` under the profiler (warm ``fn`` up before: compiles and captures are not
    wanted here)."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    total_us: dict[str, float] = defaultdict(float)
    launches: dict[str, int] = defaultdict(int)
    for event in prof.events():
        if event.device_type != DeviceType.CUDA:
            continue
        total_us[event.name] += event.time_range.elapsed_us()
        launches[event.name] += 1
    rows = [
        KernelTime(name, us / 1000.0 / calls, launches[name] / calls)
        for name, us in total_us.items()
    ]
    rows.sort(key=lambda row: row.ms_per_call, reverse=True)
    return sum(row.ms_per_call for row in rows), rows


def print_kernel_table(label: str, fn: Callable[[], object], calls: int, top: int = 25) -> None:
    """Profile ``fn`` (:func:`kernel_times`) and print its device ms per call, the device time
    by family and the ``top`` kernels, as markdown."""
    total, rows = kernel_times(fn, calls)
    print(f"\n### {label}: {total:.2f} ms of kernels per call ({calls} calls profiled)\n")
    by_family: dict[str, float] = defaultdict(float)
    for row in rows:
        by_family[kernel_family(row.name)] += row.ms_per_call
    print("| family | ms per call | share |\n|---|---|---|")
    for family, ms in sorted(by_family.items(), key=lambda item: -item[1]):
        print(f"| {family} | {ms:.2f} | {ms / max(total, 1e-9):.0%} |")
    print("\n| kernel | family | ms per call | launches per call |\n|---|---|---|---|")
    for row in rows[:top]:
        name = row.name if len(row.name) <= 90 else row.name[:87] + "..."
        print(
            f"| `{name}` | {kernel_family(row.name)} | {row.ms_per_call:.3f} | "
            f"{row.launches_per_call:g} |"
        )
