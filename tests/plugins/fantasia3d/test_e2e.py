"""End to end on CPU: both Fantasia3D stages on the shipped primitives model, the PBR export, eval.

Two prompts at the presets' own settings. Each run must leave both stages complete in one run
directory (the texture stage converted from the geometry stage), write the geometry stage's test
video (normals | silhouette) and the texture stage's (shaded | normals | silhouette), end with the
texture stage's export (obj-mtl with every PBR map attached), and reach primitives R-precision >= 0.75 on
the texture stage's test orbit. Every prompt's result on the GPU is in docs/primitives.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import imageio.v3 as iio
import pytest
import trimesh
import yaml

from tests.in_process_cli import invoke, run_method

CASES = ["a red cube", "a green cylinder"]


@pytest.mark.slow
@pytest.mark.parametrize("prompt", CASES)
def test_fantasia3d_on_the_primitives_model_draws_the_prompt(
    prompt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.perf_counter()
    run_dir = run_method(
        "fantasia3d-primitives-full",
        prompt,
        tmp_path,
        monkeypatch,
        "data.n_test_views=8",
        "geometry.data.n_test_views=2",
        "geometry.data.n_val_views=1",
    )
    geometry, texture = run_dir / "stages" / "1-geometry", run_dir / "stages" / "2-texture"
    assert (geometry / "finished.yaml").is_file() and (texture / "finished.yaml").is_file()
    parsed = yaml.safe_load((texture / "configs" / "parsed.yaml").read_text())
    assert Path(parsed["system"]["geometry_convert_from"]).resolve() == geometry.resolve()
    (normals,) = sorted(geometry.glob("save/it*-test/0.png"))
    assert iio.imread(normals).shape == (64, 3 * 64, 3)  # Lambert render | normals | silhouette
    (shaded,) = sorted(texture.glob("save/it*-test/0.png"))
    assert iio.imread(shaded).shape == (64, 3 * 64, 3)  # shaded | normals | silhouette
    assert list(geometry.glob("save/it*-test.mp4")) and list(texture.glob("save/it*-test.mp4"))

    (obj,) = texture.glob("save/*export*/model.obj")  # the run exports (export_after_fit)
    mtl = (obj.parent / "model.mtl").read_text()
    for key in ("map_Kd", "map_Pm", "map_Pr", "norm"):
        name = next(line.split()[1] for line in mtl.splitlines() if line.startswith(key + " "))
        assert (obj.parent / name).is_file(), key
    loaded = trimesh.load(obj, process=False)
    assert loaded.visual.material.image is not None and len(loaded.faces) > 100

    invoke("eval", str(run_dir), "-e", "primitives-r-precision")
    metrics = json.loads((texture / "save" / "eval.json").read_text())["evaluators"]
    print(f"fantasia3d {prompt!r}: {metrics} in {time.perf_counter() - started:.0f} s")
    score = metrics["primitives-r-precision"]
    assert score["frames"] == 8
    assert score["r_precision"] >= 0.75, score
