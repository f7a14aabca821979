"""DreamFusion-SD full step / guidance alone, from an idle GPU and back to back (CUDA).

    python bench/dreamfusion_loop.py

Same setup as ``bench/dreamfusion.py`` (SD-2.1-base-sized random-weight pipeline, eager, the
``dreamfusion-sd`` preset at step 5000). For batch 1 and 4 it builds the system four times, with
``random-camera``'s ``batches_per_draw`` at 16 (the default), 1, 16 and 1, and prints for each the
ratio measured two ways: ``from idle`` (``timing.interleaved_ms``: a sync before and after every
call, the official bench's method) and ``back to back`` (``timing.interleaved_loop_ms``: blocks of
five calls with no sync between them, as a training loop runs).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from dreamfusion import (
    FIRST_STEP,
    build_sd21_sized,
    full_step_of,
    guidance_only_of,
    make_guidance,
    make_system,
    random_prompt_output,
)
from timing import interleaved_loop_ms, interleaved_ms

DRAWS = (16, 1, 16, 1)


def compare(path: Path) -> None:
    cuda = torch.device("cuda")
    guidance = make_guidance(path, "none", False)
    prompt_utils = random_prompt_output(cuda)
    for batch in (1, 4):
        guidance_only = guidance_only_of(guidance, prompt_utils, batch)
        for draw in DRAWS:
            system, data, optimizer = make_system(guidance, prompt_utils, batch)
            data.cfg.batches_per_draw = draw
            scaler = torch.amp.GradScaler("cuda")
            full_step = full_step_of(system, data, optimizer, scaler, [FIRST_STEP])
            for _ in range(10):
                full_step()
                guidance_only()
            fns = {"guidance": guidance_only, "full": full_step}
            idle = interleaved_ms(fns, cuda, 0, 20)
            loop = interleaved_loop_ms(fns, cuda, 8, block=5)
            print(
                f"batch {batch} draw {draw:2d}: from idle {idle['guidance']:.1f}/"
                f"{idle['full']:.1f} = {idle['full'] / idle['guidance']:.3f}; back to back "
                f"{loop['guidance']:.1f}/{loop['full']:.1f} = {loop['full'] / loop['guidance']:.3f}",
                flush=True,
            )
            del system, data, optimizer, full_step, fns
            torch.cuda.empty_cache()


def main() -> int:
    if not torch.cuda.is_available():
        print("bench/dreamfusion_loop.py: needs CUDA; skipped.")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        compare(build_sd21_sized(Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
