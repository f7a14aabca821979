"""`studio.eval`: test-frame loading, the evaluator hook and eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from studio.cli.app import app
from studio.errors import PluginError, RunDirError, StudioError
from studio.eval import evaluate_run, format_results, load_test_frames, rgb_column
from studio.hookspecs import hookimpl
from studio.rundir import RunDir


def mean_red(context) -> dict:
    """Evaluator: the mean red value of the rgb columns, plus what it was given."""
    return {
        "mean_red": float(np.mean([f[..., 0].mean() for f in context.frames])),
        "widths": sorted({f.shape[1] for f in context.frames}),
        "prompt": context.prompt,
    }


def failing(context) -> dict:
    raise StudioError("needs a reference model that is not installed")


class EvaluatorPlugin:
    def __init__(self, **targets: str) -> None:
        self.targets = targets

    @hookimpl
    def studio_register_evaluators(self, register) -> None:
        for name, target in self.targets.items():
            register(name, target)

    @hookimpl
    def studio_register_methods(self, register) -> None:
        """The runs' method: it tells where the prompt evaluators see lives."""
        register(
            "eval-method",
            system="tests.core.test_eval:mean_red",
            prompt_key="system.prompt_processor.prompt",
        )


def write_run(root: Path, steps: dict[int, int], columns: int = 3, size: int = 8) -> Path:
    """Test grids per step: the rgb column is pure red times ``steps[step] / 255``."""
    (root / "configs").mkdir(parents=True)
    config = {"method": "eval-method", "system": {"prompt_processor": {"prompt": "a red cube"}}}
    (root / "configs" / "parsed.yaml").write_text(yaml.safe_dump(config))
    for step, red in steps.items():
        folder = root / "save" / f"it{step}-test"
        folder.mkdir(parents=True)
        for index in range(12):  # 0..11: sorting must be numeric, 10 after 9
            grid = np.full((size, size * columns, 3), 255, np.uint8)
            grid[:, :size] = (red + index if index == 10 else red, 0, 0)
            Image.fromarray(grid).save(folder / f"{index}.png")
    return root


def test_rgb_column_is_the_left_square_or_configured_width():
    grid = np.arange(4 * 12 * 3, dtype=np.uint8).reshape(4, 12, 3)
    assert np.array_equal(rgb_column(grid), grid[:, :4])
    assert np.array_equal(rgb_column(grid, column_width=6), grid[:, :6])
    assert np.array_equal(rgb_column(grid[:, :10]), grid[:, :10])  # not a grid: whole image
    assert rgb_column(np.zeros((4, 8), np.uint8)).shape == (4, 4, 3)


def test_latest_orbit_in_numeric_order(tmp_path):
    run = RunDir(write_run(tmp_path / "run", {50: 10, 200: 100}))
    step, frames = load_test_frames(run)
    assert step == 200 and len(frames) == 12
    assert [int(f[0, 0, 0]) for f in frames][9:] == [100, 110, 100]
    assert all(f.shape == (8, 8, 3) for f in frames)


def test_evaluate_run_calls_registered_evaluators_and_writes_json(tmp_path, studio_plugin):
    studio_plugin(
        EvaluatorPlugin(
            **{"mean-red": f"{__name__}:mean_red", "needs-model": f"{__name__}:failing"}
        )
    )
    root = write_run(tmp_path / "run", {7: 100})
    out, results = evaluate_run(root, ["mean-red", "needs-model"])
    assert results["mean-red"] == {"mean_red": 100 + 10 / 12, "widths": [8], "prompt": "a red cube"}
    assert results["needs-model"] == {"error": "needs a reference model that is not installed"}
    saved = json.loads(out.read_text())
    assert out == root / "save" / "eval.json"
    assert saved == {"step": 7, "frames": 12, "evaluators": results}
    assert not list(out.parent.glob(".eval.json.*"))  # no temporary left behind
    assert format_results({"mean-red": {"mean_red": 1 / 3}}) == ["mean-red: mean_red = 0.3333"]
    with pytest.raises(PluginError, match=r"No evaluator named 'mean-rd'.*Did you mean 'mean-red'"):
        evaluate_run(root, ["mean-rd"])


def test_run_without_test_frames_explains(tmp_path, studio_plugin):
    studio_plugin(EvaluatorPlugin(**{"mean-red": f"{__name__}:mean_red"}))
    root = write_run(tmp_path / "run", {})
    with pytest.raises(RunDirError, match=r"no test frames.*no checkpoint.*studio run"):
        evaluate_run(root, ["mean-red"])
    with pytest.raises(RunDirError, match=r"no test frames.*studio test"):
        evaluate_run(root, ["mean-red"], render=False)
    with pytest.raises(RunDirError, match=r"parsed\.yaml is missing"):
        evaluate_run(tmp_path, ["mean-red"])


def test_eval_renders_the_missing_test_orbit_like_studio_test(toy_plugin, studio_plugin, tmp_path):
    studio_plugin(EvaluatorPlugin(**{"mean-red": f"{__name__}:mean_red"}))
    runner = CliRunner()
    trained = runner.invoke(
        app,
        [
            "run",
            "toy-fit",
            "prompt=a red cube",
            f"exp_root_dir={tmp_path}",
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
            "data.n_test_views=3",
        ],
    )
    assert trained.exit_code == 0, trained.output
    (root,) = (tmp_path / "toy").iterdir()
    save = root / "save"
    # frames of an older step only: the last checkpoint (step 2) has none
    (save / "it2-test").rename(save / "it1-test")

    stale = runner.invoke(app, ["eval", str(root), "--no-render"])
    assert stale.exit_code == 0, stale.output
    assert "Rendering" not in stale.output and not (save / "it2-test").exists()
    assert json.loads((save / "eval.json").read_text())["step"] == 1

    for frame in (save / "it1-test").glob("*.png"):
        frame.unlink()
    refused = runner.invoke(app, ["eval", str(root), "--no-render"])
    assert refused.exit_code == 2
    assert "no test frames" in refused.output and "studio test" in refused.output
    assert "Traceback" not in refused.output

    rendered = runner.invoke(app, ["eval", str(root)])
    assert rendered.exit_code == 0, rendered.output
    assert rendered.output.count("Rendering the test orbit") == 1
    assert len(list((save / "it2-test").glob("*.png"))) == 3
    assert (save / "it2-test.mp4").is_file()
    saved = json.loads((save / "eval.json").read_text())
    assert saved["step"] == 2 and saved["frames"] == 3
    assert saved["evaluators"]["mean-red"]["widths"] == [16]  # data.eval_width columns

    again = runner.invoke(app, ["eval", str(root)])  # frames exist now: no second rendering
    assert again.exit_code == 0 and "Rendering" not in again.output


def write_particle_run(root: Path, reds: list[int], step: int = 9) -> Path:
    """A run of ``len(reds)`` particles: particle k's test grids have red ``reds[k]``."""
    (root / "configs").mkdir(parents=True)
    config = {
        "method": "eval-method",
        "system": {"prompt_processor": {"prompt": "a red cube"}, "num_particles": len(reds)},
    }
    (root / "configs" / "parsed.yaml").write_text(yaml.safe_dump(config))
    for index, red in enumerate(reds):
        folder = root / "save" / f"particle-{index}" / f"it{step}-test"
        folder.mkdir(parents=True)
        for view in range(3):
            grid = np.zeros((8, 24, 3), np.uint8)
            grid[:, :8] = (red, 0, 0)
            Image.fromarray(grid).save(folder / f"{view}.png")
    return root


def seen_folder(context) -> dict:
    """Evaluator: which particle and folder it was given."""
    return {"particle": context.particle, "folder": context.test_dir.parent.name}


def test_particles_are_scored_each_with_mean_and_spread(tmp_path, studio_plugin):
    studio_plugin(
        EvaluatorPlugin(**{"mean-red": f"{__name__}:mean_red", "seen": f"{__name__}:seen_folder"})
    )
    root = write_particle_run(tmp_path / "run", [10, 20, 60])
    out, results = evaluate_run(root, ["mean-red", "seen"])
    saved = json.loads(out.read_text())
    assert out == root / "save" / "eval.json"
    assert [p["evaluators"]["mean-red"]["mean_red"] for p in saved["particles"]] == [10, 20, 60]
    assert [p["evaluators"]["seen"] for p in saved["particles"]] == [
        {"particle": k, "folder": f"particle-{k}"} for k in range(3)
    ]
    # numbers averaged, other entries kept where every particle agrees
    assert results["mean-red"] == {"mean_red": 30.0, "widths": [8], "prompt": "a red cube"}
    assert saved["evaluators"]["mean-red"] == results["mean-red"]
    assert results["seen"] == {"particle": 1.0}  # the folder names differ: dropped
    spread = saved["spread"]["mean-red"]["mean_red"]
    assert spread == pytest.approx({"std": np.std([10, 20, 60]), "min": 10.0, "max": 60.0})
    lines = CliRunner().invoke(app, ["eval", str(root), "-e", "mean-red"]).output.splitlines()
    assert "particle 2: mean-red: mean_red = 60.0000" in lines
    assert any(
        line.startswith("mean over 3 particles: mean-red: mean_red = 30.0000 (std 21.6025")
        for line in lines
    ), lines


def test_particles_scored_at_different_steps_are_refused(tmp_path, studio_plugin):
    studio_plugin(EvaluatorPlugin(**{"mean-red": f"{__name__}:mean_red"}))
    root = write_particle_run(tmp_path / "run", [10, 20])
    old = root / "save" / "particle-1"
    (old / "it9-test").rename(old / "it4-test")
    with pytest.raises(RunDirError, match=r"different steps \(4, 9\)"):
        evaluate_run(root, ["mean-red"], render=False)


def test_a_particle_without_frames_is_named(tmp_path, studio_plugin):
    studio_plugin(EvaluatorPlugin(**{"mean-red": f"{__name__}:mean_red"}))
    root = write_particle_run(tmp_path / "run", [10, 20])
    for png in (root / "save" / "particle-1").rglob("*.png"):
        png.unlink()
    with pytest.raises(RunDirError, match=r"save/particle-1/it<step>-test"):
        evaluate_run(root, ["mean-red"], render=False)
