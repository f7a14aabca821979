"""Progress bars for phases of work that are not training steps (export, geometry conversion)."""

from __future__ import annotations

import sys
import time


class StageBars:
    """``progress(stage, done, total)`` (:data:`studio.mesh.auto_threshold.ProgressFn`) drawn as
    one tqdm bar per stage on stderr, each erased when the next starts or at :meth:`close`.
    ``finished`` holds ``(stage, seconds)`` of every stage that ended."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.stage: str | None = None
        self.bar = None
        self.started = time.perf_counter()
        self.finished: list[tuple[str, float]] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            from tqdm import tqdm

            self.stage, self.started = stage, time.perf_counter()
            self.bar = tqdm(
                total=total,
                desc=f"{self.prefix} {stage}",
                unit=stage.removesuffix("s"),
                leave=False,
                dynamic_ncols=True,
                mininterval=0.5,
                file=sys.stderr,
            )
        if self.bar is None:  # this stage has ended
            return
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.finished.append((self.stage, time.perf_counter() - self.started))
            self.bar = None
