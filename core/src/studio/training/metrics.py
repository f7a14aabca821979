"""Per-step scalars to ``metrics.csv`` (wide format: one row per logged step), TensorBoard optional."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from studio.errors import StudioError


def _step(row: dict[str, object]) -> float:
    """A row's step (infinity for a damaged row, which is then dropped)."""
    try:
        return int(str(row.get("step")))
    except ValueError:
        return math.inf


class MetricsWriter:
    """Append rows ``{"step": n, key: value, ...}``; new keys widen the file (rewritten once)."""

    def __init__(
        self, path: Path, resume_from_step: int | None = None, tensorboard_dir: Path | None = None
    ):
        self.path = path
        self.columns: list[str] = ["step"]
        self.rows: list[dict[str, object]] = []
        if resume_from_step is not None and path.is_file():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):  # a row cut short by a kill: not a row
                text = text[: text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(text, newline=""))
            self.columns = list(reader.fieldnames or ["step"])
            self.rows = [r for r in reader if _step(r) <= resume_from_step]
            self._rewrite()
        else:
            self._rewrite()
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise StudioError(
                    "trainer.tensorboard=true needs the tensorboard package: pip install "
                    "tensorboard (or set trainer.tensorboard=false; metrics.csv is always written)."
                ) from None

            self._tb = SummaryWriter(str(tensorboard_dir))

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)

    def log(self, step: int, values: dict[str, float]) -> None:
        row: dict[str, object] = {"step": step}
        row.update({k: (v if math.isfinite(v) else repr(v)) for k, v in values.items()})
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns.extend(new)
            self._rewrite()
        else:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.columns).writerow(row)
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
