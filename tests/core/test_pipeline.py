"""Pipelines of stages through the real CLI, on the toy plugin's two-stage ``toy-pipeline``:
stage ``coarse`` fits a density field, stage ``refine`` converts it into a lattice and refines it.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml

from studio.training.checkpoint import load_checkpoint
from tests.conftest import Studio, logged_steps

QUIET = ["prompt=a ball", "trainer.enable_progress_bar=false"]


def pipeline_root(studio: Studio) -> Path:
    (root,) = (studio.cwd / "outputs" / "toy-pipeline").iterdir()
    return root


def stage(root: Path, name: str) -> Path:
    (folder,) = (root / "stages").glob(f"*-{name}")
    return folder


def run_ok(studio: Studio, *args: str) -> str:
    result = studio.run(*args)
    assert result.returncode == 0, result.stderr
    return result.stderr


def final(root: Path) -> dict:
    """What an uninterrupted and a resumed run must share bit for bit."""
    refine = stage(root, "refine")
    checkpoint = load_checkpoint(refine / "ckpts" / "last.ckpt")
    assert checkpoint["global_step"] == 20
    return {
        "state": checkpoint["state_dict"],
        "optimizer": checkpoint["optimizer"]["state"],
        "metrics": {n: (stage(root, n) / "metrics.csv").read_text() for n in ("coarse", "refine")},
    }


def assert_identical(a: dict, b: dict) -> None:
    assert a["metrics"] == b["metrics"]
    assert a["state"].keys() == b["state"].keys()
    for key, tensor in a["state"].items():
        assert torch.equal(tensor, b["state"][key]), key
    for index, state in a["optimizer"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"][index][name]))


@pytest.fixture(scope="module")
def uninterrupted(toy_site, tmp_path_factory) -> tuple[Studio, Path]:
    studio = Studio(toy_site, tmp_path_factory.mktemp("pipeline"))
    record = studio.cwd / "record"
    record.mkdir()
    run_ok(studio, "run", "toy-pipeline", *QUIET, f"refine.system.record_dir={record}")
    return studio, pipeline_root(studio)


def test_every_stage_runs_in_one_run_directory(uninterrupted):
    _, root = uninterrupted
    listed = yaml.safe_load((root / "pipeline.yaml").read_text())
    assert listed["method"] == "toy-pipeline"
    assert [(s["name"], s["method"], s["dir"]) for s in listed["stages"]] == [
        ("coarse", "toy-shape", "stages/1-coarse"),
        ("refine", "toy-shape-refine", "stages/2-refine"),
    ]
    assert root.name.startswith("a_ball@")
    for name in ("coarse", "refine"):
        folder = stage(root, name)
        assert (folder / "finished.yaml").is_file()
        assert (folder / "ckpts" / "last.ckpt").is_file()
        assert (folder / "save" / "it20-test.mp4").is_file()
        assert (
            yaml.safe_load((folder / "configs" / "parsed.yaml").read_text())["system"]["prompt"]
            == "a ball"
        )
    refine = yaml.safe_load((stage(root, "refine") / "configs" / "parsed.yaml").read_text())
    assert refine["system"]["geometry_convert_from"] == str(stage(root, "coarse").resolve())
    record = yaml.safe_load((stage(root, "refine") / "configs" / "conversion.yaml").read_text())
    assert record["parent"] == str(stage(root, "coarse").resolve())
    assert record["step"] == 20 and record["source_geometry"] == "ToyDensity"
    assert record["threshold"] == 5.0 and record["threshold_rule"] == "configured"
    assert not (stage(root, "coarse") / "configs" / "conversion.yaml").exists()


def test_progress_names_the_stage(studio_cli):
    err = run_ok(studio_cli, "run", "toy-pipeline", "prompt=a ball", "trainer.max_steps=2")
    assert "[1/2 coarse] train" in err and "[2/2 refine] train" in err
    assert "Geometry converted from" in err


def test_shared_and_stage_overrides(studio_cli):
    run_ok(
        studio_cli,
        "run",
        "toy-pipeline",
        *QUIET,
        "seed=7",
        "trainer.max_steps=4",
        "refine.trainer.max_steps=6",
        "coarse.system.geometry.hidden=8",
    )
    root = pipeline_root(studio_cli)
    coarse = yaml.safe_load((stage(root, "coarse") / "configs" / "parsed.yaml").read_text())
    refine = yaml.safe_load((stage(root, "refine") / "configs" / "parsed.yaml").read_text())
    assert coarse["seed"] == refine["seed"] == 7
    assert coarse["trainer"]["max_steps"] == 4 and refine["trainer"]["max_steps"] == 6
    assert coarse["system"]["geometry"]["hidden"] == 8
    assert "hidden" not in refine["system"]["geometry"]  # another geometry: not shared


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("system.geometry.hiden=4", "Did you mean 'system.geometry.hidden'?"),
        ("trainer.max_step=4", "Did you mean 'trainer.max_steps'?"),
        ("refine.system.geometry.m=4", "Stage 'refine' (method toy-shape-refine)"),
    ],
)
def test_an_override_no_stage_takes_is_refused(studio_cli, override, expected):
    result = studio_cli.run("run", "toy-pipeline", "prompt=a ball", override)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (studio_cli.cwd / "outputs").exists()


def wait_for_stage_step(root_parent: Path, step: int, proc, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended early ({proc.returncode}):\n{out}\n{err}")
        roots = list(root_parent.glob("*")) if root_parent.is_dir() else []
        if roots:
            refine = roots[0] / "stages" / "2-refine"
            if logged_steps(refine) >= step:
                return roots[0]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    raise AssertionError(f"stage 2 step {step} not reached within {timeout} s")


def test_killed_in_stage_two_then_resumed_is_bit_identical(studio_cli, uninterrupted):
    proc = studio_cli.popen("run", "toy-pipeline", *QUIET, "refine.system.step_sleep=0.15")
    root = wait_for_stage_step(studio_cli.cwd / "outputs" / "toy-pipeline", 7, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    refine = stage(root, "refine")
    assert not (refine / "finished.yaml").exists()
    assert load_checkpoint(refine / "ckpts" / "last.ckpt")["global_step"] in (5, 10, 15)

    err = run_ok(studio_cli, "resume", str(root), "refine.system.step_sleep=0")
    assert "[2/2 refine] Resuming" in err and "[1/2 coarse]" not in err  # stage 1 is done
    assert (refine / "finished.yaml").is_file()
    assert_identical(final(root), final(uninterrupted[1]))


def test_resumed_between_the_stages_is_bit_identical(studio_cli, uninterrupted):
    run_ok(studio_cli, "run", "toy-pipeline", *QUIET)
    root = pipeline_root(studio_cli)
    refine = stage(root, "refine")
    for path in [*(refine / "ckpts").iterdir(), refine / "finished.yaml", refine / "metrics.csv"]:
        path.unlink()  # as if killed right after stage 1 finished
    err = run_ok(studio_cli, "resume", str(root))
    assert "[2/2 refine] Starting" in err
    assert_identical(final(root), final(uninterrupted[1]))


def test_test_export_eval_act_on_the_last_stage_or_the_one_named(studio_cli, uninterrupted):
    _, root = uninterrupted
    studio = Studio(studio_cli.site, root.parent)  # same plugin, commands on the finished run
    for path in root.rglob("it20-test"):
        for png in path.glob("*.png"):
            png.unlink()
    record = (stage(root, "refine") / "configs" / "conversion.yaml").read_text()
    err = run_ok(studio, "test", str(root))
    assert "Geometry converted" not in err  # conversion runs once, at the stage's start
    assert (stage(root, "refine") / "configs" / "conversion.yaml").read_text() == record
    assert list((stage(root, "refine") / "save" / "it20-test").glob("*.png"))
    assert not list((stage(root, "coarse") / "save" / "it20-test").glob("*.png"))
    run_ok(studio, "test", str(root), "--stage", "coarse")
    assert list((stage(root, "coarse") / "save" / "it20-test").glob("*.png"))

    assert "Geometry converted" not in run_ok(studio, "export", str(root))
    exported = json.loads(
        (stage(root, "refine") / "save" / "it20-export" / "geometry.json").read_text()
    )
    assert "levels" in exported
    run_ok(studio, "export", str(root), "--stage", "1")
    assert "net.0.weight" in json.loads(
        (stage(root, "coarse") / "save" / "it20-export" / "geometry.json").read_text()
    )

    result = studio.run("eval", str(root), "--stage", "coarse", "-e", "toy-inside")
    assert result.returncode == 0, result.stderr
    scores = json.loads((stage(root, "coarse") / "save" / "eval.json").read_text())
    assert scores["evaluators"]["toy-inside"]["prompt"] == "a ball"
    result = studio.run("test", str(root), "--stage", "middle")
    assert result.returncode == 2 and "its stages are coarse, refine" in result.stderr


def test_a_stage_run_alone_converts_the_same_geometry(studio_cli, uninterrupted):
    _, root = uninterrupted
    in_pipeline = torch.load(root.parent.parent.parent / "record" / "start.pt")
    for source in (stage(root, "coarse"), stage(root, "coarse") / "ckpts" / "last.ckpt"):
        record = studio_cli.cwd / f"alone-{source.name}"
        record.mkdir()
        run_ok(
            studio_cli,
            "run",
            "toy-shape-refine",
            *QUIET,
            f"system.geometry_convert_from={source}",
            f"system.record_dir={record}",
            "trainer.max_steps=1",
        )
        alone = torch.load(record / "start.pt")
        assert alone.keys() == in_pipeline.keys()
        for key, tensor in in_pipeline.items():
            assert torch.equal(tensor, alone[key]), key


def test_a_missing_conversion_source_is_refused_before_anything_is_created(studio_cli, tmp_path):
    result = studio_cli.run(
        "run", "toy-shape-refine", *QUIET, f"system.geometry_convert_from={tmp_path / 'nothing'}"
    )
    assert result.returncode == 2
    assert "system.geometry_convert_from=" in result.stderr and "no such file" in result.stderr
    assert not (studio_cli.cwd / "outputs").exists()


def test_methods_and_plugins_list_show_the_stages(studio_cli):
    out = studio_cli.run("methods").stdout
    assert "toy-pipeline" in out
    assert "stage 1 coarse: toy-shape" in out and "stage 2 refine: toy-shape-refine" in out
    report = json.loads(studio_cli.run("plugins", "list", "--json").stdout)
    (toy,) = [p for p in report["plugins"] if p["name"] == "toy"]
    assert toy["pipelines"]["toy-pipeline"] == [
        {"name": "coarse", "method": "toy-shape", "takes": None},
        {"name": "refine", "method": "toy-shape-refine", "takes": "system.geometry_convert_from"},
    ]
