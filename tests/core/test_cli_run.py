"""An installed plugin's method through `studio run`, `test`, `export` and the run directory."""

from __future__ import annotations

import csv
import json
import re

import imageio.v3 as iio
import yaml

from studio.io.images import read_video
from studio.training.checkpoint import load_checkpoint


def test_run_writes_the_documented_run_directory(studio_cli):
    listed = studio_cli.run("plugins", "list", "--json")
    toy = next(p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "toy")
    assert toy["distribution"] == "studio-toy" and toy["version"] == "0.3.0"
    assert "toy-fit" in toy["registers"]["method"]

    result = studio_cli.run("run", "toy-fit", "prompt=a red cube", "trainer.max_steps=12")
    assert result.returncode == 0, result.stderr
    (run_dir,) = studio_cli.run_dirs()
    assert run_dir.name.startswith("a_red_cube@")
    parsed = yaml.safe_load((run_dir / "configs" / "parsed.yaml").read_text())
    raw = yaml.safe_load((run_dir / "configs" / "raw.yaml").read_text())
    assert parsed["system"]["prompt"] == "a red cube"
    assert parsed["checkpoint"]["every_n_train_steps"] == 12  # ${trainer.max_steps} resolved
    assert raw["checkpoint"]["every_n_train_steps"] == "${trainer.max_steps}"
    assert parsed["data"]["elevation_range"] == [-10.0, 90.0]  # defaults filled in
    assert parsed["timestamp"] in run_dir.name
    assert "toy-fit" in (run_dir / "cmd.txt").read_text()

    save = run_dir / "save"
    assert sorted(p.name for p in save.glob("it*-?.png")) == ["it10-0.png", "it10-1.png"]
    grid = iio.imread(save / "it10-0.png")
    assert grid.shape == (16, 32, 3)  # prediction | target, 16x16 each
    frames = sorted((save / "it12-test").glob("*.png"))
    assert len(frames) == 6
    video = read_video(save / "it12-test.mp4")
    assert video.shape[0] == 6

    ckpt = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert ckpt["global_step"] == 12
    assert (run_dir / "ckpts" / "step=12.ckpt").is_file()
    assert (run_dir / "finished.yaml").is_file()  # trained to max_steps and tested
    assert "epoch" not in ckpt
    assert ckpt["optimizer"]["param_groups"][0]["name"] == "field"

    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert {"train/loss", "train/mse", "train_params/lambda_fit", "lr/field"} <= set(rows[0])
    # row "step 5" is the fifth optimizer step, computed at global_step 4: [0, 1, 2, 20] -> 1.2
    assert float(rows[4]["train_params/lambda_fit"]) == 1.2
    assert "it/s" in result.stderr  # progress bar with rate
    assert f"Test video: {run_dir}" in result.stderr or "it12-test.mp4" in result.stderr
    # a bar for training and one for the test views; validation (at step 10) draws none
    redraws = result.stderr.replace("\r", "\n")
    assert set(re.findall(r"^(\w+): +\d+%\|", redraws, re.MULTILINE)) == {"train", "test"}
    assert re.search(r"^test: 100%\|.*\| 6/6 \[", redraws, re.MULTILINE), result.stderr


def test_test_and_export_commands_load_the_checkpoint(studio_cli):
    assert studio_cli.run("run", "toy-fit", "prompt=x", "trainer.max_steps=4").returncode == 0
    (run_dir,) = studio_cli.run_dirs()
    for frame in (run_dir / "save" / "it4-test").glob("*.png"):
        frame.unlink()
    (run_dir / "save" / "it4-test.mp4").unlink()

    tested = studio_cli.run("test", str(run_dir), "data.n_test_views=3")
    assert tested.returncode == 0, tested.stderr
    # the test views' progress bar (rank 0, stderr): count, elapsed<remaining, rate
    bar = r"^test: 100%\|.*\| 3/3 \[\d\d:\d\d<\d\d:\d\d, .*view/s\]"
    assert re.search(bar, tested.stderr.replace("\r", "\n"), re.MULTILINE), tested.stderr
    assert len(list((run_dir / "save" / "it4-test").glob("*.png"))) == 3
    assert (run_dir / "save" / "it4-test.mp4").is_file()

    exported = studio_cli.run("export", str(run_dir))
    assert exported.returncode == 0, exported.stderr
    field = json.loads((run_dir / "save" / "it4-export" / "field.json").read_text())
    state = load_checkpoint(run_dir / "ckpts" / "last.ckpt")["state_dict"]
    assert field["net.0.weight"] == state["field.net.0.weight"].tolist()


def test_export_after_fit_exports_a_finished_run_only(studio_cli):
    args = ("run", "toy-fit", "prompt=x", "trainer.max_steps=2", "system.export_after_fit=true")
    result = studio_cli.run(*args)
    assert result.returncode == 0, result.stderr
    (run_dir,) = studio_cli.run_dirs()
    assert (run_dir / "save" / "it2-export" / "field.json").is_file()
    assert "Exported 1 file(s)" in result.stderr
    plain = studio_cli.run("run", "toy-fit", "prompt=x", "trainer.max_steps=2", "tag=plain")
    assert plain.returncode == 0
    (other,) = [d for d in studio_cli.run_dirs() if d != run_dir]
    assert not list((other / "save").glob("*export*"))


def test_failed_export_leaves_no_files(studio_cli):
    assert studio_cli.run("run", "toy-fit", "prompt=x", "trainer.max_steps=2").returncode == 0
    (run_dir,) = studio_cli.run_dirs()
    result = studio_cli.run("export", str(run_dir), "system.exporter.fail=true")
    assert result.returncode != 0
    leftovers = [p.name for p in (run_dir / "save").iterdir() if "export" in p.name]
    assert leftovers == []


def test_export_without_exporter_explains(studio_cli):
    assert studio_cli.run("run", "toy-fit", "prompt=x", "trainer.max_steps=2").returncode == 0
    (run_dir,) = studio_cli.run_dirs()
    result = studio_cli.run("export", str(run_dir), 'system.exporter_type=""')
    assert result.returncode == 2
    assert "has no exporter configured" in result.stderr and "Traceback" not in result.stderr


def test_config_yaml_layers_on_the_method_preset(studio_cli):
    config = studio_cli.cwd / "mine.yaml"
    config.write_text(
        "method: toy-fit\nname: custom\nsystem:\n  prompt: from yaml\ntrainer:\n  max_steps: 3\n"
    )
    result = studio_cli.run("run", str(config))
    assert result.returncode == 0, result.stderr
    (run_dir,) = studio_cli.run_dirs("custom")
    parsed = yaml.safe_load((run_dir / "configs" / "parsed.yaml").read_text())
    assert parsed["system"]["prompt"] == "from yaml"
    assert parsed["data"]["height"] == 8  # from the preset


def test_methods_lists_descriptions(studio_cli):
    result = studio_cli.run("methods")
    assert result.returncode == 0
    assert "toy-fit" in result.stdout and "analytic target" in result.stdout
