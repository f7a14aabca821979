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
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def frame_paths(spec: str) -> dict[str, Path]:
    """The frames of one set, keyed by their index (``NNN``): ``FOLDER`` or ``FOLDER:pK``."""
    folder, _, particle = spec.partition(":")
    prefix = f"{particle}-" if particle else ""
    found = {}
    for path in sorted(Path(folder).glob(f"{prefix}[0-9]*.png")):
        index = path.stem[len(prefix) :]
        if index.isdigit():
            found[index] = path
    if not found:
        raise SystemExit(f"no frames {prefix}NNN.png in {folder}: give a folder of test frames")
    return found


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def pair_difference(a: dict[str, Path], b: dict[str, Path]) -> float:
    """Mean |a - b| over every pixel and channel of the frames both sets hold."""
    shared = sorted(a.keys() & b.keys())
    if not shared:
        raise SystemExit("two frame sets share no frame index: are they from the same test orbit?")
    return float(np.mean([np.abs(load_rgb(a[i]) - load_rgb(b[i])).mean() for i in shared]))


def pairwise_differences(specs: Sequence[str]) -> dict[tuple[str, str], float]:
    sets = {spec: frame_paths(spec) for spec in specs}
    return {(a, b): pair_difference(sets[a], sets[b]) for a, b in itertools.combinations(specs, 2)}


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
