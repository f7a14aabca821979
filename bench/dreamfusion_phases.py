"""Where the host time of an eager DreamFusion-SD step goes, phase by phase (CUDA).

    python bench/dreamfusion_phases.py [--iters N]

Same setup as ``bench/dreamfusion.py`` (SD-2.1-base-sized random-weight pipeline, the
``dreamfusion-sd`` preset at step 5000, 16-mixed autocast). For batch 1 and 4 and for both
marching wrappers (``single-sync``: ``occupancy_marching.march``; ``nerfacc``:
``OccGridEstimator.sampling``), it prints the median ms of each phase of a step measured two
ways: ``host`` without any synchronisation (the time the host spends issuing the phase; the
step is launch-bound, so this is what the step costs) and ``synced`` with a device sync after
each phase (the phase's own wall time when it starts on an idle GPU). ``sampling`` is the
marching inside ``render``. The guidance-alone and full-step medians are timed alternately in
one loop, as in ``bench/dreamfusion.py``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from dreamfusion import (
    FIRST_STEP,
    build_sd21_sized,
    guidance_only_of,
    make_guidance,
    make_system,
    random_prompt_output,
)
from timing import interleaved_loop_ms, interleaved_ms

PHASES = ("data", "update", "render", "guidance", "losses", "backward", "optimizer", "drain")


def run(path: Path, batch: int, iters: int) -> None:
    from studio.training.trainer import to_device
    from studio_dreamfusion.system import weighted_guidance_losses

    cuda = torch.device("cuda")
    guidance = make_guidance(path, "none", False)
    prompt_utils = random_prompt_output(cuda)
    system, data, optimizer = make_system(guidance, prompt_utils, batch)
    scaler = torch.amp.GradScaler("cuda")
    renderer = system.renderer
    sampling_ms: list[float] = []
    sample = renderer._sample

    def timed_sample(*args, **kwargs):
        start = time.perf_counter()
        result = sample(*args, **kwargs)
        sampling_ms.append((time.perf_counter() - start) * 1000.0)
        return result

    renderer._sample = timed_sample
    step = [FIRST_STEP]

    def marked_step(sync: bool) -> list[float]:
        marks = [time.perf_counter()]

        def mark() -> None:
            if sync:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

        batch_data = to_device(data.train_batch(), cuda)
        mark()
        system.do_update_step(0, step[0])
        system.global_step = step[0]
        mark()
        with torch.autocast("cuda", dtype=torch.float16):
            out = renderer(**batch_data)
            mark()
            guided = guidance(out["comp_rgb"], prompt_utils, **batch_data, rgb_as_latents=False)
            mark()
            loss, _ = weighted_guidance_losses(guided, system.C, system.cfg.loss)
            for name, value in system.regularisers(out).items():
                loss = loss + value * system.C(system.cfg.loss[f"lambda_{name}"])
            mark()
        scaler.scale(loss).backward()
        mark()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        mark()
        torch.cuda.synchronize()
        marks.append(time.perf_counter())
        step[0] += 1
        return [(b - a) * 1000.0 for a, b in itertools.pairwise(marks)]

    def full_step() -> None:
        marked_step(False)

    guidance_only = guidance_only_of(guidance, prompt_utils, batch)

    gc_ms: list[float] = []
    gc_started: list[float] = []

    def gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started:
            gc_ms.append((time.perf_counter() - gc_started[0]) * 1000.0)

    gc.callbacks.append(gc_timer)
    for marching, freeze in (("single-sync", False), ("nerfacc", False), ("single-sync", True)):
        renderer.single_sync_marching = marching == "single-sync"
        if freeze:  # everything built so far leaves the collector's generations
            gc.collect()
            gc.freeze()
            marching += " + gc.freeze"
        gc_ms.clear()
        for _ in range(8):
            full_step()
        timed = interleaved_ms({"guidance": guidance_only, "full": full_step}, cuda, 2, iters)
        loop = interleaved_loop_ms({"guidance": guidance_only, "full": full_step}, cuda, 6)
        rows = {}
        for sync in (False, True):
            torch.cuda.synchronize()
            sampling_ms.clear()
            per_step = [marked_step(sync) for _ in range(iters)]
            rows[sync] = [statistics.median(p[i] for p in per_step) for i in range(len(PHASES))]
            rows[sync].append(statistics.median(sampling_ms))
            rows[sync].append(statistics.median(sum(p) for p in per_step))
        ratio = timed["full"] / timed["guidance"]
        print(
            f"\nbatch {batch}, {marching} marching: guidance alone {timed['guidance']:.1f} ms, "
            f"full step {timed['full']:.1f} ms, ratio {ratio:.3f}; back to back (a training "
            f"loop): guidance {loop['guidance']:.1f} ms, full {loop['full']:.1f} ms, ratio "
            f"{loop['full'] / loop['guidance']:.3f}; garbage collection {sum(gc_ms):.0f} ms in "
            f"{len(gc_ms)} passes (longest {max(gc_ms, default=0.0):.1f} ms)"
        )
        print("| | " + " | ".join(PHASES) + " | of which sampling | step |")
        print("|---" * (len(PHASES) + 3) + "|")
        for sync, label in ((False, "host"), (True, "synced")):
            print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in rows[sync]) + " |")
        sys.stdout.flush()
    gc.callbacks.remove(gc_timer)
    gc.unfreeze()


def kernel_profile(path: Path, steps: int = 3) -> None:
    """The CUDA kernels of eager batch-1 full steps by device time (top 15) and their total."""
    from dreamfusion import bench
    from torch.profiler import ProfilerActivity, profile

    full_step = bench(path, 1, "none", False, False, iters=3, return_step=True)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            full_step()
        torch.cuda.synchronize()
    totals: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = totals.setdefault(event.name[:90], [0.0, 0])
            entry[0] += event.device_time / 1e3 / steps
            entry[1] += 1 / steps
    busy = sum(v[0] for v in totals.values())
    print(f"\nkernels per step: {sum(v[1] for v in totals.values()):.0f}, busy {busy:.1f} ms")
    for name, (ms, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:15]:
        print(f"  {ms:6.2f} ms  {count:5.0f}x  {name}")


def op_sources(path: Path, steps: int = 3) -> None:
    """Per phase of an eager batch-1 full step: how many ops it dispatches (each costs host time
    in a launch-bound step) and the source lines issuing most of them (ops without a studio
    line, e.g. backward, are listed by name)."""
    import collections
    import traceback

    from dreamfusion import bench
    from torch.utils._python_dispatch import TorchDispatchMode

    class Sources(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.phase = ""
            self.counts: dict[str, collections.Counter] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            where = f"<{func.overloadpacket}>"
            for frame in reversed(traceback.extract_stack(limit=30)[:-1]):
                if "studio" in frame.filename or "bench/" in frame.filename:
                    where = f"{Path(frame.filename).name}:{frame.lineno}"
                    break
            self.counts.setdefault(self.phase, collections.Counter())[where] += 1
            return func(*args, **(kwargs or {}))

    full_step = bench(path, 1, "none", False, False, iters=3, return_step=True)
    import studio_dreamfusion.system as system_module

    sources = Sources()
    original = system_module.DreamFusionSystem.training_step

    def phased(self, batch):
        sources.phase = "render"
        out = self.renderer(**batch)
        sources.phase = "guidance"
        guided = self.guidance(out["comp_rgb"], self.prompt_utils, **batch, rgb_as_latents=False)
        sources.phase = "losses"
        loss, _ = system_module.weighted_guidance_losses(guided, self.C, self.cfg.loss)
        for name, value in self.regularisers(out).items():
            loss = loss + value * self.C(self.cfg.loss[f"lambda_{name}"])
        sources.phase = "backward+optimizer"
        return {"loss": loss}

    system_module.DreamFusionSystem.training_step = phased
    with sources:
        for _ in range(steps):
            sources.phase = "data+update"
            full_step()
    system_module.DreamFusionSystem.training_step = original
    for phase, counter in sources.counts.items():
        total = sum(counter.values()) / steps
        print(f"\n{phase}: {total:.0f} ops per step; top sources:")
        for where, n in counter.most_common(25 if phase != "guidance" else 5):
            print(f"  {n / steps:6.1f}  {where}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--kernels", action="store_true", help="also list the top CUDA kernels")
    parser.add_argument(
        "--ops", action="store_true", help="only count each phase's ops by source line"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/dreamfusion_phases.py: needs CUDA; skipped.")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        if args.ops:
            op_sources(path)
            return 0
        if args.kernels:
            kernel_profile(path)
        for batch in (1, 4):
            run(path, batch, args.iters)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
