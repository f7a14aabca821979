"""ProlificDreamer's presets carry the reference's settings (§5.6), and the pipeline runs them in
order with ``model=`` reaching the LoRA's base model too."""

from __future__ import annotations

import pytest

from studio.config.loading import get_dotted
from studio.config.resolve import load_experiment
from studio.pipeline import resolve_stages
from studio.registry import get_registry

CONVERTED = ["system.geometry_convert_from="]


def parsed(preset: str, *overrides: str) -> dict:
    extra = CONVERTED if preset in ("prolificdreamer-geometry", "prolificdreamer-texture") else []
    return load_experiment(preset, [*extra, *overrides], prompt="a red torus").parsed


@pytest.mark.parametrize(
    ("preset", "key", "value"),
    [
        ("prolificdreamer", "data.width", [64, 512]),
        ("prolificdreamer", "data.resolution_milestones", [5000]),
        ("prolificdreamer", "system.guidance.guidance_scale", 7.5),
        ("prolificdreamer", "system.guidance.max_step_percent", [5000, 0.98, 0.5, 5001]),
        ("prolificdreamer", "system.guidance.pretrained_model_name_or_path_lora",
         "stabilityai/stable-diffusion-2-1"),
        ("prolificdreamer", "system.loss.lambda_opaque", [10000, 0.0, 1000.0, 10001]),
        ("prolificdreamer", "system.loss.lambda_sparsity", 10.0),
        ("prolificdreamer", "system.optimizer.params.guidance.lr", 0.0001),
        ("prolificdreamer", "trainer.max_steps", 25000),
        ("prolificdreamer", "trainer.precision", "32"),
        ("prolificdreamer-geometry", "system.geometry.isosurface_resolution", 128),
        ("prolificdreamer-geometry", "system.geometry.geometry_only", True),
        ("prolificdreamer-geometry", "system.guidance.guidance_scale", 100.0),
        ("prolificdreamer-geometry", "system.loss.lambda_laplacian_smoothness", 10000.0),
        ("prolificdreamer-geometry", "system.optimizer.args.lr", 0.005),
        ("prolificdreamer-geometry", "trainer.max_steps", 15000),
        ("prolificdreamer-texture", "system.geometry.fix_geometry", True),
        ("prolificdreamer-texture", "system.geometry.isosurface_remove_outliers", True),
        ("prolificdreamer-texture", "trainer.max_steps", 30000),
        ("prolificdreamer-scene", "system.geometry.radius", 5.0),
        ("prolificdreamer-scene", "system.geometry.density_blob_scale", -10.0),
        ("prolificdreamer-scene", "system.geometry.density_blob_std", 2.5),
        ("prolificdreamer-scene", "data.camera_distance_range", (0.1, 2.3)),
        ("prolificdreamer-scene", "system.guidance.max_step_percent", [10000, 0.98, 0.5, 10001]),
        ("prolificdreamer-scene", "system.loss.lambda_z_variance", 1.0),
    ],
)  # fmt: skip
def test_presets_keep_the_reference_settings(preset: str, key: str, value) -> None:
    assert get_dotted(parsed(preset), key) == value


def test_the_optimizer_groups_of_each_stage() -> None:
    coarse = parsed("prolificdreamer")["system"]["optimizer"]["params"]
    assert coarse["geometry.encoding"]["lr"] == 0.01 and coarse["background"]["lr"] == 0.001
    assert set(coarse) == {
        "geometry.encoding",
        "geometry.density_network",
        "geometry.feature_network",
        "background",
        "guidance",
    }
    assert parsed("prolificdreamer-geometry")["system"]["optimizer"]["params"] is None
    assert set(parsed("prolificdreamer-texture")["system"]["optimizer"]["params"]) == {
        "geometry.encoding",
        "geometry.feature_network",
        "background",
        "guidance",
    }


def test_the_pipeline_runs_the_three_stages_and_model_sets_the_lora_base_too() -> None:
    spec = get_registry().get("method", "prolificdreamer-full")
    spec = getattr(spec, "spec", spec)
    stages = resolve_stages(spec, [], "a red torus", "primitives", allow_missing=True)
    assert [(s.spec.name, s.spec.method) for s in stages] == [
        ("coarse", "prolificdreamer"),
        ("geometry", "prolificdreamer-geometry"),
        ("texture", "prolificdreamer-texture"),
    ]
    models = []
    for stage in stages:
        system = stage.resolved.parsed["system"]
        guidance = system["guidance"]
        models.append(
            (
                guidance["pretrained_model_name_or_path"],
                guidance.get("pretrained_model_name_or_path_lora"),
            )
        )
        assert system["prompt_processor"]["pretrained_model_name_or_path"] == "primitives-sd"
    assert models == [
        ("primitives-sd", "primitives-sd"),
        ("primitives-sd", None),
        ("primitives-sd", "primitives-sd"),
    ]
