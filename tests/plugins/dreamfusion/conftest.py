"""Fixtures for DreamFusion-plugin tests: tiny random diffusion pipelines and an isolated cache.

``tiny_sd_model`` / ``tiny_if_model`` are pipeline folders (see :mod:`.tiny_models`) built once per
test session; pass them as ``pretrained_model_name_or_path`` to the guidance and the prompt
processor. ``studio_cache_dir`` points ``$STUDIO_CACHE_DIR`` (text-embedding cache) at a fresh
folder for one test, so nothing is written to the user's cache. ``torch_single_thread`` runs a
module's tests with one intra-op thread: the tiny models' ops are so small that thread hand-offs
dominate, and on a busy 2-core machine spinning worker threads made them 10x slower.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.plugins.dreamfusion.tiny_models import make_tiny_if, make_tiny_sd


@pytest.fixture(scope="session")
def tiny_sd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion pipeline folder (32x32 renders, 16x16 latents)."""
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_if_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DeepFloyd IF stage-I pipeline folder (16x16 pixels, 6 output channels)."""
    return make_tiny_if(tmp_path_factory.mktemp("tiny-if"))


@pytest.fixture
def studio_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``$STUDIO_CACHE_DIR`` for this test."""
    folder = tmp_path / "studio-cache"
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def torch_single_thread() -> Iterator[None]:
    """One torch intra-op thread for the requesting module (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
