"""The primitives methods, presets and shipped pipelines as `studio` sees them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from studio.cli.app import app
from studio.config.resolve import load_experiment
from studio.models.embedded import locate
from studio_primitives.models.architectures import SIZE_BUDGET_BYTES
from studio_primitives.weights import FOLDER

FORMS = {"dreamfusion-primitives": "primitives-sd", "dreamfusion-primitives-if": "primitives-if"}


def test_methods_are_listed() -> None:
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0, result.output
    for method in FORMS:
        assert method in result.output


@pytest.mark.parametrize(("method", "model"), FORMS.items())
def test_presets_resolve_to_the_embedded_models(method: str, model: str) -> None:
    resolved = load_experiment(method, [], prompt="a red cube")
    system = resolved.parsed["system"]
    assert system["prompt_processor"]["pretrained_model_name_or_path"] == model
    assert system["guidance"]["pretrained_model_name_or_path"] == model
    assert system["guidance_type"] == ("stable-diffusion" if model.endswith("sd") else "deep-floyd")
    assert locate(model).path == FOLDER / model.removeprefix("primitives-")


@pytest.mark.parametrize("method", FORMS)
def test_presets_render_no_textureless_views(method: str) -> None:
    # the primitives models never saw a white-albedo render (black objects turned to grey fuzz);
    # the reference's DreamFusion presets keep their textureless share
    material = load_experiment(method, [], prompt="a black cube").parsed["system"]["material"]
    assert material["textureless_prob"] == 0.0
    reference = load_experiment("dreamfusion-sd", [], prompt="a black cube").parsed["system"]
    assert reference["material"].get("textureless_prob", 0.5) == 0.5


@pytest.mark.parametrize(
    ("method", "model"), [("dreamfusion-sd", "primitives-sd"), ("dreamfusion-if", "primitives-if")]
)
def test_model_shorthand_picks_the_variant_of_the_guidance(method: str, model: str) -> None:
    resolved = load_experiment(method, [], prompt="a blue torus", model="primitives")
    assert resolved.parsed["system"]["guidance"]["pretrained_model_name_or_path"] == model


def test_out_of_vocabulary_prompt_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", "dreamfusion-primitives", "prompt=a hamburger", f"exp_root_dir={out}"]
    )
    assert result.exit_code == 2, result.output
    assert "Known shapes: cube, sphere" in result.output and "Known colours: red" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_shipped_pipelines_are_fp16_safetensors_within_the_size_budget() -> None:
    total = 0
    for form in ("sd", "if"):
        folder = FOLDER / form
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == ("StableDiffusionPipeline" if form == "sd" else "IFPipeline")
        for weights in folder.rglob("*.safetensors"):
            with safe_open(weights, "pt") as f:
                dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
            assert dtypes == {"F16"}, (weights, dtypes)
            total += weights.stat().st_size
    total += (FOLDER / "classifier.safetensors").stat().st_size
    assert total <= SIZE_BUDGET_BYTES, total


@pytest.mark.slow
def test_shipped_sd_pipeline_draws_the_prompted_shape_and_colour() -> None:
    """A regression check of the shipped SD-form weights on CPU: one DDIM sample for one prompt
    per shape (colours rotating), classified by the shipped classifier; the full table (4 samples
    x 48 prompts) is in docs/primitives.md."""
    import torch
    from diffusers import StableDiffusionPipeline

    from studio_primitives.shapes import SHAPES
    from studio_primitives.training.train import TrainConfig, sample_accuracy, sample_images

    pipe = StableDiffusionPipeline.from_pretrained(
        FOLDER / "sd", safety_checker=None, requires_safety_checker=False
    )
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.to(torch.float32)
    colors = ["red", "green", "blue", "yellow", "purple", "white"]
    prompts = [f"a {c} {s}, front view" for s, c in zip(SHAPES, colors, strict=True)]
    cfg = TrainConfig(form="sd", out=Path("unused"), sample_steps=20, samples_per_prompt=1)
    images = sample_images(pipe, cfg, prompts, torch.device("cpu"), seed=0)
    accuracy = sample_accuracy(images, prompts, 1)
    assert accuracy["accuracy"] >= 5 / 6, accuracy["per_prompt"]
