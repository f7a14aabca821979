"""Tiny-model tests here run single-threaded (see ``torch_single_thread``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_dreamfusion.prompts.stable_diffusion import StableDiffusionPromptProcessor
from tests.plugins.dreamfusion.guidance.reference import cache_dir


@pytest.fixture(scope="module", autouse=True)
def _single_thread(torch_single_thread: None) -> None:
    """Apply ``torch_single_thread`` to every module of this folder."""


@pytest.fixture(scope="module")
def prompts(tiny_sd_model: Path, tmp_path_factory: pytest.TempPathFactory) -> PromptProcessorOutput:
    """The tiny SD model's prompt embeddings of "a red chair" (view-dependent)."""
    with cache_dir(tmp_path_factory.mktemp("cache")):
        processor = StableDiffusionPromptProcessor(
            {"pretrained_model_name_or_path": str(tiny_sd_model), "prompt": "a red chair"},
            device=torch.device("cpu"),
        )
    return processor()
