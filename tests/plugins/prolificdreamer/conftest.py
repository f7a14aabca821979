"""Fixtures of the ProlificDreamer tests: tiny random Stable Diffusion folders and prompts.

``tiny_sd_model`` is an epsilon-prediction pipeline (the pretrained model); ``tiny_sd_v_model``
another one (other seed) whose scheduler predicts ``v`` (the LoRA's base, like SD 2.1). Both
are built once per session (:mod:`tests.plugins.dreamfusion.tiny_models`); every test here runs
with one torch thread (the tiny models' ops are dominated by thread hand-offs otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_dreamfusion.prompts.stable_diffusion import StableDiffusionPromptProcessor
from tests.plugins.dreamfusion.guidance.reference import cache_dir
from tests.plugins.dreamfusion.tiny_models import make_tiny_sd


@pytest.fixture(scope="session")
def tiny_sd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random epsilon-prediction SD pipeline folder (32x32 images, 16x16 latents)."""
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_sd_v_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny random SD folder (seed 1) whose scheduler is ``v_prediction``."""
    folder = make_tiny_sd(tmp_path_factory.mktemp("tiny-sd-v"), seed=1)
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["prediction_type"] = "v_prediction"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def prompts(tiny_sd_model: Path, tmp_path_factory: pytest.TempPathFactory) -> PromptProcessorOutput:
    """The tiny model's embeddings of "a red chair" (view-dependent and plain)."""
    with cache_dir(tmp_path_factory.mktemp("cache")):
        processor = StableDiffusionPromptProcessor(
            {"pretrained_model_name_or_path": str(tiny_sd_model), "prompt": "a red chair"},
            device=torch.device("cpu"),
        )
    return processor()


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
