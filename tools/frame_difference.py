"""How different runs (or particles) came out: the mean pairwise difference of aligned test frames.

usage: python tools/frame_difference.py FRAMES [FRAMES ...]

Each ``FRAMES`` is a set of test frames of one result, aligned with the others' (the same test
orbit): a folder's ``NNN.png``, or ``FOLDER:pK`` for particle k's ``pK-NNN.png`` in a folder that
``tools/primitives_table.py`` kept for a run of several particles. For every pair of sets the
difference is the mean absolute difference of their RGB values in [0, 1] over every pixel of every
frame they share; the tool prints each pair's and their mean. Zero means copies.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def frame_paths(spec: str) -> dict[str, Path]:
    """The frames of one set, keyed by their index (``NNN``): ``FOLDER`` or ``FOLDER:pK``."""
    folder, _, particle = spec.rpartition(":")
    if not re.fullmatch(r"p\d+", particle):  # no particle suffix (a ':' may be in the path)
        folder, particle = spec, ""
    prefix = f"{particle}-" if particle else ""
    found = {}
    for path in sorted(Path(folder).glob(f"{prefix}[0-9]*.png")):
        index = path.stem[len(prefix) :]
        if index.isdigit():
            found[index] = path
    if not found:
        hint = " (a run of several particles: give FOLDER:p0, FOLDER:p1, ...)" if not prefix else ""
        raise SystemExit(f"no frames {prefix}NNN.png in {folder}{hint}")
    return found


def load_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as RGB floats in [0, 1], ``[H, W, 3]``."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def pair_difference(a: dict[str, Path], b: dict[str, Path], names: tuple[str, str]) -> float:
    """Mean |a - b| over every pixel and channel of the frames both sets hold (``names`` are
    the two sets' specs, for the errors)."""
    shared = sorted(a.keys() & b.keys())
    if not shared:
        raise SystemExit(f"{names[0]} and {names[1]} share no frame index: same test orbit?")
    values = []
    for index in shared:
        first, second = load_rgb(a[index]), load_rgb(b[index])
        if first.shape != second.shape:
            raise SystemExit(
                f"frame {index}: {first.shape[1]}x{first.shape[0]} in {names[0]} but "
                f"{second.shape[1]}x{second.shape[0]} in {names[1]}; compare frames of one size"
            )
        values.append(np.abs(first - second).mean())
    return float(np.mean(values))


def pairwise_differences(specs: Sequence[str]) -> dict[tuple[str, str], float]:
    """:func:`pair_difference` of every pair of ``specs`` (``FOLDER`` or ``FOLDER:pK``)."""
    sets = {spec: frame_paths(spec) for spec in specs}
    return {
        (a, b): pair_difference(sets[a], sets[b], (a, b))
        for a, b in itertools.combinations(specs, 2)
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/frame_difference.py", description=__doc__)
    parser.add_argument("frames", nargs="+", help="FOLDER or FOLDER:pK, at least two")
    args = parser.parse_args(argv)
    if len(args.frames) < 2:
        parser.error("give at least two frame sets to compare")
    differences = pairwise_differences(args.frames)
    for (a, b), value in differences.items():
        print(f"{value:.4f}  {a}  {b}")
    print(f"mean {statistics.fmean(differences.values()):.4f} over {len(differences)} pair(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
