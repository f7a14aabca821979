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
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from dreamfusion import build_sd21_sized, make_guidance, make_system, random_prompt_output
from timing import interleaved_ms

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
    step = [5000]

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

    cams = {
        "elevation": torch.full((batch,), 10.0, device="cuda"),
        "azimuth": torch.zeros(batch, device="cuda"),
        "camera_distances": torch.full((batch,), 1.8, device="cuda"),
    }
    image = torch.rand(batch, 64, 64, 3, device="cuda", requires_grad=True)

    def guidance_only() -> None:
        guidance(image, prompt_utils, **cams)["loss_sds"].backward()

    for marching in ("single-sync", "nerfacc"):
        renderer.single_sync_marching = marching == "single-sync"
        for _ in range(8):
            full_step()
        timed = interleaved_ms({"guidance": guidance_only, "full": full_step}, cuda, 2, iters)
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
            f"full step {timed['full']:.1f} ms, ratio {ratio:.3f}"
        )
        print("| | " + " | ".join(PHASES) + " | of which sampling | step |")
        print("|---" * (len(PHASES) + 3) + "|")
        for sync, label in ((False, "host"), (True, "synced")):
            print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in rows[sync]) + " |")
        sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/dreamfusion_phases.py: needs CUDA; skipped.")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        for batch in (1, 4):
            run(path, batch, args.iters)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
