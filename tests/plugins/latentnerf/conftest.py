"""Fixtures of the Latent-NeRF tests: a tiny random Stable Diffusion folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugins.dreamfusion.tiny_models import make_tiny_sd


@pytest.fixture(scope="session")
def tiny_sd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion pipeline folder (32x32 images, 16x16 latents)."""
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))
