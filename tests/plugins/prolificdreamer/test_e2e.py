"""End to end on CPU: ProlificDreamer's three stages on the shipped primitives model, then eval.

Two prompts at the pipeline's own settings (``prolificdreamer-primitives-full``), with fewer test
and validation views. Each run must leave the three stages complete in one run directory (the
geometry stage converted from the coarse NeRF, the texture stage from the geometry stage), write
each stage's test video and the textured export (obj-mtl with its baked texture), and reach
primitives R-precision >= 0.75 on the texture stage's test orbit. Every prompt's result on the
GPU is in docs/primitives.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import trimesh
import yaml

from tests.in_process_cli import invoke, run_method

METHOD = "prolificdreamer-primitives-full"
STAGES = ("1-coarse", "2-geometry", "3-texture")


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["a red torus", "a green cube"])
def test_prolificdreamer_on_the_primitives_model_draws_the_prompt(
    prompt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.perf_counter()
    run_dir = run_method(
        METHOD,
        prompt,
        tmp_path,
        monkeypatch,
        "data.n_test_views=8",
        "data.n_val_views=1",
        # the first two stages' own orbits are not scored here
        "coarse.data.n_test_views=2",
        "geometry.data.n_test_views=2",
    )
    stages = [run_dir / "stages" / name for name in STAGES]
    for stage in stages:
        assert (stage / "finished.yaml").is_file(), stage
        assert list(stage.glob("save/it*-test.mp4")), stage
    sources = ("ImplicitVolume", "TetrahedraSDFGrid")
    for source, stage, geometry in zip(stages[:-1], stages[1:], sources, strict=True):
        record = yaml.safe_load((stage / "configs" / "conversion.yaml").read_text())
        assert Path(record["parent"]).resolve() == source.resolve()
        assert record["source_geometry"] == geometry
    (export,) = stages[2].glob("save/it*-export")
    mesh = trimesh.load(export / "model.obj", force="mesh")
    assert len(mesh.faces) > 100 and mesh.visual.material.image is not None

    invoke("eval", str(run_dir), "-e", "primitives-r-precision")
    score = json.loads((stages[2] / "save" / "eval.json").read_text())["evaluators"][
        "primitives-r-precision"
    ]
    print(f"{METHOD} {prompt!r}: {score} in {time.perf_counter() - started:.0f} s")
    assert score["frames"] == 8
    assert score["r_precision"] >= 0.75, score
