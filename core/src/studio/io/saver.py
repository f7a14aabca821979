"""The run's ``save/`` folder as systems see it.

Systems queue images with :meth:`Saver.image_grid` / :meth:`Saver.image`; the trainer calls
:meth:`Saver.flush` after each validation/test pass, which gathers the images of every rank to
rank 0 and writes them there. Only rank 0 touches the file system.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from studio.distributed import DistContext, gather_objects
from studio.io.images import (
    Colormap,
    grayscale_to_uint8,
    image_grid,
    rgb_to_uint8,
    write_png,
    write_video,
)


def rgb(img: Any, data_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """A grid column from an RGB image (HWC, values in ``data_range``)."""
    return rgb_to_uint8(img, data_range)


def grayscale(
    img: Any, data_range: Optional[tuple[float, float]] = (0.0, 1.0), cmap: Colormap = None
) -> np.ndarray:
    """A grid column from a one-channel image (``data_range=None``: min/max normalised)."""
    return grayscale_to_uint8(img, data_range, cmap)


class Saver:
    """Queue images on any rank; write them (on rank 0) under ``save_dir``."""

    def __init__(self, save_dir: Path, ctx: DistContext):
        self.save_dir = save_dir
        self.ctx = ctx
        self._pending: list[tuple[str, np.ndarray]] = []

    def image(self, name: str, img: np.ndarray) -> None:
        """Queue a uint8 HW3 image to be written as ``save/<name>`` (a ``.png`` path)."""
        self._pending.append((name, np.ascontiguousarray(img)))

    def image_grid(self, name: str, columns: list[np.ndarray]) -> None:
        """Queue columns (from :func:`rgb` / :func:`grayscale`) side by side as one PNG."""
        self.image(name, image_grid(columns))

    def flush(self) -> list[Path]:
        """Write every rank's queued images on rank 0; returns the written paths (rank 0)."""
        pending, self._pending = self._pending, []
        gathered = gather_objects(pending, self.ctx)
        if not self.ctx.is_main:
            return []
        written = []
        for items in gathered:
            for name, img in items:
                path = self.save_dir / name
                write_png(path, img)
                written.append(path)
        return written

    def video_from_frames(self, frames_dir: str, video_name: str, fps: int = 30) -> Optional[Path]:
        """Rank 0: encode ``save/<frames_dir>/<i>.png`` (sorted by i) into ``save/<video_name>``."""
        if not self.ctx.is_main:
            return None
        import imageio.v3 as iio

        folder = self.save_dir / frames_dir
        numbered = []
        for path in folder.glob("*.png"):
            match = re.fullmatch(r"(\d+)\.png", path.name)
            if match:
                numbered.append((int(match.group(1)), path))
        if not numbered:
            return None
        frames = [iio.imread(p)[..., :3] for _, p in sorted(numbered)]
        out = self.save_dir / video_name
        write_video(out, frames, fps=fps)
        return out
