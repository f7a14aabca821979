"""Rearrange a training run's ``samples.png`` into the docs' sheet: one row per shape, the first
``--per-colour`` samples of each colour side by side (colours in the data set's order).

usage: python tools/sample_sheet.py SAMPLES.png OUT.png [--per-colour 2] [--samples-per-prompt 4]
``SAMPLES.png`` is the grid ``studio primitives train`` (or ``sample-check``) writes: one row per
``"a {colour} {shape}, front view"`` prompt in data order (shapes outer), one column per sample.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image

from studio_primitives.colors import COLORS
from studio_primitives.data import PAIRS
from studio_primitives.shapes import SHAPES


def sheet(grid: np.ndarray, samples_per_prompt: int, per_colour: int) -> np.ndarray:
    """``[len(SHAPES) * s, len(COLORS) * per_colour * s, 3]`` from a prompt-per-row ``grid``."""
    size = grid.shape[1] // samples_per_prompt
    if grid.shape[0] != size * len(PAIRS) or per_colour > samples_per_prompt:
        raise SystemExit(
            f"expected {len(PAIRS)} rows of {samples_per_prompt} tiles of {size} px and "
            f"--per-colour <= {samples_per_prompt}; got an image of shape {grid.shape}"
        )
    rows = []
    for s, _shape in enumerate(SHAPES):
        tiles = []
        for c, _colour in enumerate(COLORS):
            row = s * len(COLORS) + c  # PAIRS order: shapes outer, colours inner
            tiles.append(grid[row * size : (row + 1) * size, : per_colour * size])
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/sample_sheet.py", description=__doc__)
    parser.add_argument("samples")
    parser.add_argument("out")
    parser.add_argument("--per-colour", type=int, default=2)
    parser.add_argument("--samples-per-prompt", type=int, default=4)
    args = parser.parse_args(argv)
    grid = np.asarray(Image.open(args.samples).convert("RGB"))
    Image.fromarray(sheet(grid, args.samples_per_prompt, args.per_colour)).save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
