"""End to end on CPU: ``sjc-primitives`` on the shipped primitives model, then eval.

Two prompts at the preset's own settings (300 steps). Each run must write the decoded validation
grids (decoded RGB | opacity | depth) and the test video, and reach primitives R-precision >=
0.75 on the decoded test orbit. Every prompt's result on the GPU is in docs/primitives.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import imageio.v3 as iio
import pytest

from tests.in_process_cli import invoke, run_method

CASES = ["a blue sphere", "a red cube"]


@pytest.mark.slow
@pytest.mark.parametrize("prompt", CASES)
def test_sjc_on_the_primitives_model_draws_the_prompt(
    prompt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.perf_counter()
    run_dir = run_method("sjc-primitives", prompt, tmp_path, monkeypatch, "data.n_test_views=12")
    save = run_dir / "save"
    assert (save / "it300-test.mp4").is_file()
    grid = iio.imread(save / "it300-0.png")
    assert grid.shape == (64, 3 * 64, 3)  # decoded RGB | opacity | depth, each at the eval size
    invoke("eval", str(run_dir), "-e", "primitives-r-precision")
    score = json.loads((save / "eval.json").read_text())["evaluators"]["primitives-r-precision"]
    print(f"sjc-primitives {prompt!r}: {score} in {time.perf_counter() - started:.0f} s")
    assert score["frames"] == 12
    assert score["r_precision"] >= 0.75, score
