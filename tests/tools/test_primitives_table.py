"""tools/primitives_table.py: scoring the kept test frames again with other classifier weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from studio_primitives.classifier import default_weights_path
from studio_primitives.data import generate


def keep(out: Path, table, preset: str, prompt: str, images: list[np.ndarray]) -> None:
    folder = out / "test-frames" / preset / table.slug(prompt)
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:03d}.png")


def test_rescore_classifies_the_kept_frames_and_writes_its_own_table(tmp_path, table):
    samples = list(generate(480, 7, 64))  # 10 views of each pair
    cubes = [s.image for s in samples if (s.shape, s.color) == ("cube", "red")]
    spheres = [s.image for s in samples if (s.shape, s.color) == ("sphere", "blue")]
    preset = "dreamfusion-primitives"
    records = [  # scores as a different classifier gave them; the error record stays as it is
        {
            "preset": preset,
            "prompt": "a red cube",
            "r_precision": 0.0,
            "shape_accuracy": 0.0,
            "color_accuracy": 0.0,
            "frames": 2,
            "run_s": 10.0,
            "eval_s": 1.0,
        },
        {
            "preset": preset,
            "prompt": "a green cube",
            "r_precision": 1.0,
            "shape_accuracy": 1.0,
            "color_accuracy": 1.0,
            "frames": 2,
            "run_s": 12.0,
            "eval_s": 1.0,
        },
        {"preset": preset, "prompt": "a white torus", "run_s": 3.0, "error": "exited 1"},
    ]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    keep(tmp_path, table, preset, "a red cube", cubes)
    keep(tmp_path, table, preset, "a green cube", spheres)  # frames of the wrong object

    rescored = {r["prompt"]: r for r in table.rescore(tmp_path, default_weights_path())}
    red_cube = rescored["a red cube"]
    assert red_cube["r_precision"] >= 0.8 and red_cube["rescored"]
    assert rescored["a green cube"]["r_precision"] == 0.0
    assert rescored["a red cube"]["frames"] == len(cubes)
    assert rescored["a white torus"] == {**records[2], "rescored": False}

    text = table.summarize(tmp_path, default_weights_path())
    assert (tmp_path / "table-classifier.md").read_text() == text
    assert f"2 runs: mean R-precision **{red_cube['r_precision'] / 2:.3f}**" in text
    assert "1 runs failed: a white torus" in text
    assert not (tmp_path / "table.md").exists()  # the run's own table is left alone


def test_frame_grid_places_each_prompts_first_kept_frame(tmp_path, table):
    preset = "dreamfusion-primitives-if"
    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 200
    keep(tmp_path, table, preset, "a blue torus", [red, np.zeros_like(red)])
    table.frame_grid(tmp_path, preset)
    grid = np.array(Image.open(tmp_path / f"frames-{preset}.png"))
    assert grid.shape == (6 * 8, 8 * 8, 3)  # shapes x colours of 8-pixel tiles
    row, column = 4, 2  # torus, blue
    assert (grid[row * 8 : row * 8 + 8, column * 8 : column * 8 + 8] == red).all()
    grid[row * 8 : row * 8 + 8, column * 8 : column * 8 + 8] = 128
    assert (grid == 128).all()  # every other prompt has no run


def test_a_pipelines_table_gives_each_stages_mean_and_how_often_the_last_kept_up(tmp_path, table):
    def record(prompt: str, coarse: float, refine: float) -> dict:
        stage = lambda r: {"r_precision": r, "shape_accuracy": r, "color_accuracy": 1.0}  # noqa: E731
        return {
            "preset": "magic3d-primitives",
            "prompt": prompt,
            "stages": {"coarse": stage(coarse), "refine": stage(refine)},
            **stage(refine),
            "frames": 30,
            "run_s": 100.0,
            "eval_s": 20.0,
        }

    records = [record("a red cube", 1.0, 0.8), record("a blue sphere", 0.5, 1.0)]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    text = table.summarize(tmp_path)
    assert "mean R-precision **0.900**" in text  # the last stage's
    assert "Per stage, mean R-precision: coarse 0.750, refine 0.900." in text
    assert "refine >= coarse on 1 of 2 prompts." in text


def test_a_failed_runs_record_keeps_the_end_of_its_log(tmp_path, table):
    log = tmp_path / "run.log"
    log.write_text("step 1\n\nstep 2\nerror: no surface at threshold 5.0\n", encoding="utf-8")
    tail = table.log_tail(log, lines=2)
    assert tail.startswith("step 2 | error: no surface at threshold 5.0")
    assert str(log) in tail


def test_per_prompt_overrides_and_extra_metrics_in_the_table(tmp_path, table):
    assert table.prompt_overrides("a green cone", ["guide_shape={shape}", "tag={color}-x"]) == [
        "guide_shape=cone",
        "tag=green-x",
    ]
    records = [
        {"preset": "sketchshape-primitives-full", "prompt": prompt, "r_precision": 1.0,
         "shape_accuracy": 1.0, "color_accuracy": 1.0, "frames": 30, "run_s": 80.0,
         "eval_s": 9.0, "extra": {"guide-silhouette-iou": {"iou_mean": iou, "iou_min": iou - 0.1,
                                                           "guide_shape": "cube"}}}
        for prompt, iou in (("a red cube", 0.9), ("a blue cube", 0.8))
    ]  # fmt: skip
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    text = table.summarize(tmp_path)
    assert (
        "guide-silhouette-iou over 2 runs: iou_mean mean 0.850 (min 0.800), "
        "iou_min mean 0.750 (min 0.700)." in text
    )


def test_each_job_runs_with_its_share_of_the_cpu_threads(tmp_path, table):
    fake_studio = tmp_path / "studio"
    fake_studio.write_text('#!/bin/sh\necho "threads $OMP_NUM_THREADS/$MKL_NUM_THREADS"\nexit 3\n')
    fake_studio.chmod(0o755)
    record = table.run_one(str(fake_studio), "p", "a red cube", tmp_path, [], threads=2)
    assert record["error"].startswith("studio run exited 3: threads 2/2")
