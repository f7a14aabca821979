"""`studio eval RUN_DIR` with the primitives R-precision evaluator on fake run directories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from studio.eval import evaluate_run
from studio_primitives.data import PAIRS, camera_sampler, make_sample

SIZE = 64
FRAMES = 12


def frames_of(shape: str, color: str, seed: int = 77) -> list[np.ndarray]:
    """Generator renders of one pair from ``FRAMES`` random cameras."""
    cameras = camera_sampler(SIZE)
    pair = PAIRS.index((shape, color))
    return [make_sample(pair + 48 * k, seed, SIZE, cameras).image for k in range(FRAMES)]


def fake_run(root: Path, prompt: str, frames: list[np.ndarray], step: int = 100) -> Path:
    """A run directory with parsed.yaml and rgb | normal | opacity test grids."""
    (root / "configs").mkdir(parents=True)
    config = {
        "method": "dreamfusion-primitives",  # its registered prompt_key tells where the prompt is
        "system": {"prompt_processor": {"prompt": prompt}},
        "data": {"eval_width": SIZE},
    }
    (root / "configs" / "parsed.yaml").write_text(yaml.safe_dump(config))
    folder = root / "save" / f"it{step}-test"
    folder.mkdir(parents=True)
    normal = np.full((SIZE, SIZE, 3), 128, np.uint8)
    for index, rgb in enumerate(frames):
        opacity = np.repeat((rgb.sum(-1, keepdims=True) > 0).astype(np.uint8) * 255, 3, -1)
        Image.fromarray(np.concatenate([rgb, normal, opacity], axis=1)).save(
            folder / f"{index}.png"
        )
    return root


def test_r_precision_is_high_for_matching_frames_and_low_for_another_shape(tmp_path):
    good = fake_run(tmp_path / "good", "a red cube", frames_of("cube", "red"))
    out, results = evaluate_run(good, ["primitives-r-precision"])
    metrics = results["primitives-r-precision"]
    assert metrics["applicable"] and metrics["frames"] == FRAMES
    assert metrics["r_precision"] >= 0.9
    written = json.loads(out.read_text())
    assert out == good / "save" / "eval.json" and written["step"] == 100
    assert written["evaluators"]["primitives-r-precision"]["r_precision"] == metrics["r_precision"]

    wrong = fake_run(tmp_path / "wrong", "a red cube", frames_of("sphere", "red"))
    metrics = evaluate_run(wrong, ["primitives-r-precision"])[1]["primitives-r-precision"]
    assert metrics["r_precision"] <= 0.2 and metrics["color_accuracy"] >= 0.9


def test_cli_reports_not_applicable_prompts(tmp_path):
    run = fake_run(tmp_path / "run", "a fluffy corgi", frames_of("cube", "red")[:2])
    studio = Path(sys.executable).with_name("studio")
    result = subprocess.run(
        [str(studio), "eval", str(run), "-e", "primitives-r-precision"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "primitives-r-precision: applicable = False" in result.stdout
    assert "Known shapes: cube" in result.stdout
    saved = json.loads((run / "save" / "eval.json").read_text())
    assert saved["evaluators"]["primitives-r-precision"]["applicable"] is False
