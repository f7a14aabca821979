"""What the primitives models accept as prompts (``studio_primitives.prompts.check_prompt``), the
canonical caption that reaches their text encoders, and the evaluator's reading of both forms."""

from __future__ import annotations

import importlib

import pytest
import torch

from studio.config.resolve import load_experiment
from studio.errors import ConfigError
from studio_dreamfusion.prompts.base import model_prompt
from studio_primitives.colors import COLORS
from studio_primitives.data import view_caption
from studio_primitives.evaluation import prompt_target
from studio_primitives.prompts import check_prompt, parse_prompt, unknown_words
from studio_primitives.shapes import SHAPES

#: What a person types -> the caption the models were trained on.
ACCEPTED = [
    ("a red cube", "a red cube"),
    ("A Red Cube", "a red cube"),
    ("a red cube.", "a red cube"),
    ("  a  red   cube.  ", "a red cube"),
    ("an orange sphere", "a orange sphere"),
    ("An Orange Sphere.", "a orange sphere"),
    ("the white sphere", "a white sphere"),
    ("THE BLUE TORUS", "a blue torus"),
    ("black pyramid", "a black pyramid"),
    ("Green cone.", "a green cone"),
    ("a purple cylinder", "a purple cylinder"),
    ("a yellow cube\n", "a yellow cube"),
]


@pytest.mark.parametrize(("prompt", "canonical"), ACCEPTED)
def test_natural_forms_are_accepted_as_their_canonical_caption(prompt: str, canonical: str) -> None:
    assert check_prompt(prompt, "") == canonical
    assert check_prompt(canonical, "") == canonical


@pytest.mark.parametrize(("shape", "color"), [("cube", "red"), ("sphere", "orange")])
def test_the_canonical_caption_is_the_training_caption(shape: str, color: str) -> None:
    """The data set's caption of a side view is the canonical caption plus the processor's suffix."""
    view, caption = view_caption(shape, color, elevation=10.0, azimuth=90.0)
    assert view == "side"
    assert caption == check_prompt(f"The {color.title()} {shape}.") + ", side view"


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        ("a hamburger", "unknown words 'hamburger'"),
        ("a shiny red cube", "unknown words 'shiny'"),
        ("a red cube and a blue cube", "unknown words 'and'; 2 colours instead of one"),
        ("a red cube next to a sphere", "2 shapes instead of one"),
        ("a cube", "0 colours instead of one"),
        ("", "0 shapes instead of one"),
        ("an orange sphere and a cube", "unknown words 'and'; 2 shapes instead of one"),
        ("a red cube, side view", "words outside the form '[a|an|the] <colour> <shape>'"),
        ("cube red", "words outside the form"),
        ("a a red cube", "words outside the form"),
        ("a red cube!", "words outside the form"),
        ("a red red cube", "words outside the form"),
        ("a red cube..", "words outside the form"),
    ],
)
def test_other_prompts_are_refused_with_the_vocabulary(prompt: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_prompt(prompt, "")
    message = str(info.value)
    assert problem in message
    assert f"Known shapes: {', '.join(SHAPES)}." in message
    assert f"Known colours: {', '.join(COLORS)}." in message


def test_negative_prompt_may_only_use_known_words() -> None:
    check_prompt("a red cube", "a blue sphere")
    with pytest.raises(ConfigError, match="negative prompt 'blurry, ugly' has unknown words"):
        check_prompt("a red cube", "blurry, ugly")


def test_unknown_words_keeps_order_and_drops_repeats() -> None:
    assert unknown_words("Big big RED cube, tiny") == ["big", "tiny"]


@pytest.mark.parametrize(("prompt", "canonical"), ACCEPTED)
def test_the_evaluator_reads_the_natural_and_the_canonical_form(
    prompt: str, canonical: str
) -> None:
    target = parse_prompt(canonical)
    assert target is not None
    assert prompt_target(prompt) == (target, "")
    assert prompt_target(canonical) == (target, "")


@pytest.mark.parametrize("model", ["primitives-sd", "primitives-if"])
def test_the_prompt_processors_encode_the_canonical_caption(model: str) -> None:
    """What reaches the text encoder: the registered model's check gives the canonical form."""
    assert model_prompt(model, "An Orange Sphere.") == "a orange sphere"
    assert model_prompt(model, "a red cube") == "a red cube"
    with pytest.raises(ConfigError, match="unknown words 'hamburger'"):
        model_prompt(model, "a hamburger")
    # other models' prompts are not touched
    assert model_prompt("owner/some-hub-model", "An Orange Sphere.") == "An Orange Sphere."


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "processor"),
    [
        ("dreamfusion-primitives", "stable_diffusion:StableDiffusionPromptProcessor"),
        ("dreamfusion-primitives-if", "deep_floyd:DeepFloydPromptProcessor"),
    ],
)
def test_a_natural_prompt_gets_the_embeddings_of_its_caption(
    method: str, processor: str, tmp_path, monkeypatch
) -> None:
    """Config resolution accepts the natural form and keeps it; the processor embeds the caption
    (the IF form's tokenizer would otherwise not even fold the case)."""
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path))
    module, name = processor.split(":")
    cls = getattr(importlib.import_module(f"studio_dreamfusion.prompts.{module}"), name)
    parsed = load_experiment(method, [], prompt="A Red Cube.").parsed
    config = parsed["system"]["prompt_processor"]
    assert config["prompt"] == "A Red Cube."
    natural = cls(config, device=torch.device("cpu"))
    canonical = cls({**config, "prompt": "a red cube"}, device=torch.device("cpu"))
    views = [f"a red cube, {view} view" for view in ("side", "front", "back", "overhead")]
    assert natural.prompt == "a red cube"
    assert natural.prompts_vd == canonical.prompts_vd == views
    for ours, theirs in zip(
        natural().text_embeddings_vd, canonical().text_embeddings_vd, strict=True
    ):
        assert torch.equal(ours, theirs)
