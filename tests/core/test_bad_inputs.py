"""Bad input is refused before anything is created: one paragraph naming the key, the value and a
fix; no traceback; no new file or folder. Table-driven over the classes of the reliability issue
(the toy plugin's methods; DreamFusion's are in tests/plugins/dreamfusion/test_bad_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from studio.cli.app import app

TOY = ["run", "toy-fit", "prompt=x", "trainer.enable_progress_bar=false"]
PIPE = ["run", "toy-pipeline", "prompt=x", "trainer.enable_progress_bar=false"]


def snapshot(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def refuse(args: list[str], *expected: str, cwd: Path) -> str:
    """Run the CLI in-process in ``cwd``; assert exit 2, one paragraph with ``expected``, no
    traceback and an unchanged ``cwd``; returns the message."""
    before = snapshot(cwd)
    result = CliRunner().invoke(app, args)
    message = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, message, result.exception)
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in message
    for text in expected:
        assert text in message, (text, message)
    assert snapshot(cwd) == before, "the refused run left files behind"
    return message


@pytest.fixture
def here(tmp_path, monkeypatch, toy_plugin) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


CASES = [
    # 1. text keys: the prompt is text, and an empty one is refused
    (["run", "toy-fit", "prompt="], ["system.prompt", "empty"]),
    (["run", "toy-fit", "--prompt", "   "], ["system.prompt", "empty"]),
    # 2. values that make no sense
    ([*TOY, "trainer.max_steps=0"], ["trainer.max_steps", "at least 1", "got 0"]),
    ([*TOY, "trainer.max_steps=-1"], ["trainer.max_steps", "got -1"]),
    (
        [*TOY, "trainer.accumulate_grad_batches=0"],
        ["trainer.accumulate_grad_batches", "at least 1"],
    ),
    ([*TOY, "trainer.val_check_interval=0"], ["trainer.val_check_interval", "at least 1"]),
    ([*TOY, "trainer.log_every_n_steps=0"], ["trainer.log_every_n_steps", "at least 1"]),
    ([*TOY, "trainer.num_sanity_val_steps=-1"], ["trainer.num_sanity_val_steps", "at least 0"]),
    ([*TOY, "trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val", "at least 0"]),
    ([*TOY, "checkpoint.every_n_train_steps=0"], ["checkpoint.every_n_train_steps", "at least 1"]),
    ([*TOY, "checkpoint.save_top_k=-2"], ["checkpoint.save_top_k", "at least -1"]),
    ([*TOY, "data.batch_size=0"], ["data.batch_size", "between 1 and"]),
    ([*TOY, "data.width=0"], ["data.width", "between 1 and 8192", "got 0"]),
    ([*TOY, "data.width=100000"], ["data.width", "got 100000"]),
    ([*TOY, "data.height=[8, 0]", "data.resolution_milestones=[5]"], ["data.height", "got 0"]),
    ([*TOY, "data.eval_width=0"], ["data.eval_width", "between 1 and 8192"]),
    ([*TOY, "data.n_test_views=0"], ["data.n_test_views", "at least 1"]),
    ([*TOY, "data.n_val_views=0"], ["data.n_val_views", "at least 1"]),
    ([*TOY, "data.elevation_range=[90,-90]"], ["data.elevation_range", "low <= high", "reversed"]),
    ([*TOY, "data.elevation_range=[-100,10]"], ["data.elevation_range", "between -90 and 90"]),
    ([*TOY, "data.fovy_range=[70,40]"], ["data.fovy_range", "low <= high"]),
    ([*TOY, "data.fovy_range=[10,200]"], ["data.fovy_range", "between"]),
    ([*TOY, "data.camera_distance_range=[2,1]"], ["data.camera_distance_range", "low <= high"]),
    ([*TOY, "data.camera_distance_range=[-1,1]"], ["data.camera_distance_range", "at least"]),
    ([*TOY, "data.eval_fovy_deg=0"], ["data.eval_fovy_deg", "between"]),
    ([*TOY, "data.camera_perturb=-0.1"], ["data.camera_perturb", "at least 0"]),
    ([*TOY, "data.eval_elevation_deg=.nan"], ["data.eval_elevation_deg", "finite"]),
    ([*TOY, "data.eval_camera_distance=.inf"], ["data.eval_camera_distance", "finite"]),
    ([*TOY, "system.loss.lambda_fit=.inf"], ["system.loss.lambda_fit", "finite"]),
    ([*TOY, "system.loss.lambda_fit=[0, 1.0, .nan, 10]"], ["system.loss.lambda_fit", "finite"]),
    ([*TOY, "system.optimizer.args.lr=.inf"], ["system.optimizer.args.lr", "finite"]),
    ([*TOY, "--nproc", "0"], ["--nproc 0", "at least 1"]),
    # 3. typos, in typed and in free-form sections
    ([*TOY, "trainer.max_step=3"], ["trainer.max_step", "did you mean 'trainer.max_steps'"]),
    ([*TOY, "data.widht=8"], ["data.widht", "did you mean 'data.width'"]),
    (
        [*TOY, "system.background.hiden=8"],
        ["system.background.hiden", "'system.background.hidden'"],
    ),
    ([*TOY, "system.optimizer.name=Adamm"], ["system.optimizer.name", "did you mean 'Adam'"]),
    ([*TOY, "system.optimizer.args.betaz=[0.9,0.9]"], ["system.optimizer", "betaz"]),
    ([*TOY, "system.optimizer.params.field.lrr=0.1"], ["system.optimizer", "lrr"]),
    ([*TOY, "system.scheduler.name=Linear"], ["system.scheduler.name", "LinearLR"]),
    ([*TOY, "system.scheduler.args.gama=0.9"], ["system.scheduler", "gama"]),
    ([*TOY, "system.loss.fit=1"], ["system.loss.fit", "lambda_<term>"]),
    ([*TOY, "data_type=random-camra"], ["random-camra", "random-camera"]),
    ([*TOY, "system.background_type=toy-direction-feild"], ["toy-direction-field"]),
    (["run", "toy-fitt", "prompt=x"], ["No method named 'toy-fitt'", "'toy-fit'"]),
    # 4. paths that must exist, before anything is created
    ([*TOY, "system.weights=/nonexistent/run"], ["system.weights=", "no such file"]),
    (
        ["run", "toy-shape-refine", "prompt=x", "system.geometry_convert_from=/nonexistent"],
        ["system.geometry_convert_from=", "no such file"],
    ),
    # 6. name and tag stay below exp_root_dir
    ([*TOY, "name=../../x"], ["name='../../x'", "path separator", "exp_root_dir"]),
    ([*TOY, "name=a/b"], ["name='a/b'", "path separator"]),
    ([*TOY, "tag=.."], ["tag='..'"]),
    ([*TOY, "tag=x/../../y"], ["tag='x/../../y'"]),
    ([*TOY, "name="], ["name=''"]),
    # pipelines: the same rules through stage prefixes and shared keys
    ([*PIPE, "refine.trainer.max_steps=0"], ["Stage 'refine'", "trainer.max_steps", "at least 1"]),
    ([*PIPE, "system.geometry.hiden=4"], ["matches no stage's config", "system.geometry.hidden"]),
    ([*PIPE, "coarse.data.width=0"], ["Stage 'coarse'", "data.width"]),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_bad_input_is_one_paragraph_and_creates_nothing(here, args, expected):
    refuse(args, *expected, cwd=here)


def test_text_keys_keep_the_text(here):
    """`prompt=no` is the prompt "no", not YAML's false; `a sky: at dusk` is not a mapping."""
    import json

    for value in ("no", "a sky: at dusk", "42", "null", "a cube # red", "[1, 2]"):
        result = CliRunner().invoke(
            app, ["config", "show", "toy-fit", f"prompt={value}", f"tag={value}x", "--json"]
        )
        assert result.exit_code == 0, result.output
        rows = {row["key"]: row["value"] for row in json.loads(result.output)}
        assert rows["system.prompt"] == value
        assert rows["tag"] == f"{value}x"
    quoted = CliRunner().invoke(app, ["config", "show", "toy-fit", "prompt='a cat'", "--json"])
    assert {r["key"]: r["value"] for r in json.loads(quoted.output)}["system.prompt"] == "a cat"


def test_unwritable_places_are_one_paragraph(here, monkeypatch):
    blocker = here / "a-file"
    blocker.write_text("not a folder")
    refuse([*TOY, f"exp_root_dir={blocker}/runs"], "exp_root_dir", "not writable", cwd=here)
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(blocker / "cache"))
    refuse([*TOY], "STUDIO_CACHE_DIR", "not writable", cwd=here)


def test_a_start_that_fails_before_training_removes_its_directory(here):
    result = CliRunner().invoke(app, [*TOY, "system.fail_at_step=0"])
    assert result.exit_code != 0
    assert "Nothing was trained; removed" in result.output
    assert not (here / "outputs" / "toy").exists() or not any((here / "outputs" / "toy").iterdir())


def test_accelerator_cuda_without_a_gpu(here):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    refuse([*TOY, "trainer.accelerator=cuda"], "trainer.accelerator=cuda", "no CUDA", cwd=here)
    refuse([*TOY, "--gpus", "0"], "--gpus 0", "no CUDA", cwd=here)
