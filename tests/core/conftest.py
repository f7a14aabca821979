"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.core import embedded_models
from tests.core.embedded_models import HERE, ModelPlugin, make_pipeline


@pytest.fixture
def embedded_models_plugin(
    studio_plugin: Callable[..., None], tmp_path: Path
) -> Iterator[dict[str, Path]]:
    """Models ``toy-sd`` and ``toy-if`` registered by plugin ``toy-models`` (distribution
    ``studio-toy-models``), each a fake pipeline folder in tmp; yields name -> folder."""
    folders = {
        "toy-sd": make_pipeline(tmp_path / "weights" / "sd"),
        "toy-if": make_pipeline(tmp_path / "weights" / "if"),
    }
    embedded_models.FOLDERS.update(folders)
    plugin = ModelPlugin({"toy-sd": f"{HERE}:toy_sd", "toy-if": f"{HERE}:toy_if"})
    studio_plugin(plugin, name="toy-models", distribution="studio-toy-models")
    yield folders
    embedded_models.FOLDERS.clear()
