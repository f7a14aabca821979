"""The ``clip-r-precision`` evaluator with a tiny random CLIP model saved in a folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from studio.eval import EvalContext, evaluate_run
from studio.prompt_library import library
from studio.registry import get_registry
from studio_dreamfusion import evaluation
from studio_dreamfusion.evaluation import ClipScorer, Preprocessing, evaluate
from tests.plugins.dreamfusion.tiny_models import RENDER_SIZE, make_tiny_clip

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def clip_env(tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STUDIO_CLIP_MODEL", str(tiny_clip))
    return tiny_clip


def frames(count: int = 6, size: int = RENDER_SIZE, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def context(prompt: str, images: list[np.ndarray]) -> EvalContext:
    config = {"method": "dreamfusion-sd", "system": {"prompt_processor": {"prompt": prompt}}}
    return EvalContext(Path("."), config, 0, images, prompt)


def reference_similarities(folder: Path, images: list[np.ndarray], prompts: list[str]):
    """Cosine similarities [frames, prompts] through transformers' own processor and padding."""
    from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(str(folder)).eval()
    tokens = CLIPTokenizer.from_pretrained(str(folder))(
        prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
    )
    pixels = AutoImageProcessor.from_pretrained(str(folder))(images, return_tensors="pt")
    with torch.inference_mode():
        output = model(**tokens, pixel_values=pixels["pixel_values"])
    image = torch.nn.functional.normalize(output.image_embeds, dim=-1)
    text = torch.nn.functional.normalize(output.text_embeds, dim=-1)
    return image @ text.T


def test_eval_clip_r_precision_matches_an_independent_ranking(clip_env):
    images = frames()
    prompts = list(library())
    similarities = reference_similarities(clip_env, images, [*prompts, "a red chair"])
    best = similarities[:, : len(prompts)].argmax(dim=-1)  # among the library only
    # the library prompt the first frame ranks highest: R-precision is at least 1/6 for it
    prompt = prompts[int(best[0])]
    expected = float((best == int(best[0])).float().mean())
    result = evaluate(context(prompt, images))
    assert result == {
        "applicable": True,
        "r_precision": pytest.approx(expected),
        "frames": 6,
        "n_prompts": 415,
        "model": str(clip_env),
    }
    assert 0 < result["r_precision"]

    outside = evaluate(context("a red chair", images))  # not in the library: appended
    assert outside["n_prompts"] == 416
    best_all = similarities.argmax(dim=-1)
    assert outside["r_precision"] == pytest.approx(float((best_all == 415).float().mean()))

    scorer = ClipScorer.load(clip_env)
    mine = scorer.image_embeddings(images) @ scorer.text_embeddings([*prompts, "a red chair"]).T
    assert torch.allclose(mine, similarities, atol=1e-4)


def test_eval_clip_r_precision_right_is_one_and_wrong_is_zero(clip_env, monkeypatch):
    prompt = "a hamburger on a red chair"
    target = len(library())  # absent from the library: the last candidate

    def texts(self, prompts):
        assert prompts[target] == prompt and len(prompts) == target + 1
        return torch.eye(len(prompts))

    monkeypatch.setattr(ClipScorer, "text_embeddings", texts)
    for hit, expected in ((target, 1.0), (3, 0.0)):

        def images(self, given, hit=hit):
            return torch.nn.functional.one_hot(torch.full((len(given),), hit), target + 1).float()

        monkeypatch.setattr(ClipScorer, "image_embeddings", images)
        result = evaluate(context(prompt, frames(4)))
        assert result["r_precision"] == expected
        assert result["frames"] == 4 and result["n_prompts"] == target + 1


def test_eval_clip_r_precision_without_the_model_is_not_applicable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("STUDIO_CLIP_MODEL", raising=False)
    started = time.monotonic()
    result = evaluate(context("a hamburger", frames(2)))
    assert time.monotonic() - started < 2
    assert result["applicable"] is False
    reason = result["reason"]
    assert "openai/clip-vit-base-patch32" in reason and "studio models pull" in reason
    assert "\n" not in reason

    monkeypatch.setenv("STUDIO_CLIP_MODEL", str(tmp_path / "no-such-clip"))
    missing = evaluate(context("a hamburger", frames(2)))
    assert missing["applicable"] is False and "no-such-clip" in missing["reason"]
    assert "studio models pull" in missing["reason"]


def test_eval_clip_r_precision_not_a_clip_folder_is_an_error(tmp_path, monkeypatch):
    from studio.errors import StudioError

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("STUDIO_CLIP_MODEL", str(tmp_path))
    with pytest.raises(
        StudioError, match=r"could not be loaded as a CLIP model.*STUDIO_CLIP_MODEL"
    ):
        evaluate(context("a hamburger", frames(1)))


def test_eval_clip_preprocessing_follows_the_processor_config(clip_env):
    from transformers import AutoImageProcessor

    frame = frames(1, seed=1)[0]
    frame = np.asarray(Image.fromarray(frame).resize((60, 48)))  # 48 high, 60 wide: smooth-ish
    reference = AutoImageProcessor.from_pretrained(str(clip_env))([frame], return_tensors="pt")
    mine = Preprocessing.from_folder(clip_env, 99)(frame)  # the config wins over image_size
    assert mine.shape == (3, RENDER_SIZE, RENDER_SIZE)
    assert (mine - reference["pixel_values"][0]).abs().mean() < 0.02

    standard = Preprocessing.from_folder(clip_env.parent / "no-config", 24)
    assert standard == Preprocessing.standard(24)
    assert standard(np.zeros((30, 40, 3), np.uint8)).shape == (3, 24, 24)
    assert Preprocessing.standard(24)(np.zeros((10, 10, 3), np.uint8)).shape == (3, 24, 24)


def test_eval_run_reports_clip_r_precision(clip_env, tmp_path):
    assert "clip-r-precision" in get_registry().names("evaluator")
    root = tmp_path / "run"
    (root / "configs").mkdir(parents=True)
    config = {
        "method": "dreamfusion-sd",
        "system": {"prompt_processor": {"prompt": "a cat"}},
        "data": {"eval_width": 32},
    }
    (root / "configs" / "parsed.yaml").write_text(yaml.safe_dump(config))
    folder = root / "save" / "it5-test"
    folder.mkdir(parents=True)
    for index, image in enumerate(frames(3)):
        grid = np.concatenate([image, np.zeros_like(image)], axis=1)  # rgb | normal
        Image.fromarray(grid).save(folder / f"{index}.png")
    out, results = evaluate_run(root, ["clip-r-precision"])
    saved = json.loads(out.read_text())["evaluators"]["clip-r-precision"]
    assert saved == results["clip-r-precision"]
    assert saved["frames"] == 3 and saved["n_prompts"] == 416 and saved["model"] == str(clip_env)
    assert evaluation.model_name() == str(clip_env)
