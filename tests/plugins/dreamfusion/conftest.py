"""Fixtures for DreamFusion-plugin tests: tiny random diffusion pipelines and an isolated cache.

``tiny_sd_model`` / ``tiny_if_model`` are pipeline folders (see :mod:`.tiny_models`) built once per
test session; pass them as ``pretrained_model_name_or_path`` to the guidance and the prompt
processor. ``studio_cache_dir`` points ``$STUDIO_CACHE_DIR`` (text-embedding cache) at a fresh
folder for one test, so nothing is written to the user's cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
