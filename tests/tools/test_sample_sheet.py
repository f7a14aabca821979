"""tools/sample_sheet.py: a prompt-per-row sample grid rearranged into shapes x colours."""

from __future__ import annotations

import numpy as np
import pytest

from studio_primitives.colors import COLORS
from studio_primitives.data import PAIRS
from studio_primitives.shapes import SHAPES


def test_each_tile_lands_under_its_shape_and_colour(tool):
    size, per_prompt = 4, 3
    grid = np.zeros((len(PAIRS) * size, per_prompt * size, 3), dtype=np.uint8)
    for row in range(len(PAIRS)):
        for column in range(per_prompt):
            grid[row * size : (row + 1) * size, column * size : (column + 1) * size] = (
                row,
                column,
                0,
            )
    out = tool.sheet(grid, per_prompt, 2)
    assert out.shape == (len(SHAPES) * size, len(COLORS) * 2 * size, 3)
    for s, shape in enumerate(SHAPES):
        for c, colour in enumerate(COLORS):
            for k in range(2):
                tile = out[s * size, (2 * c + k) * size]
                assert tuple(tile[:2]) == (PAIRS.index((shape, colour)), k)
    with pytest.raises(SystemExit, match="expected 48 rows"):
        tool.sheet(grid[:-size], per_prompt, 2)
