"""Fixtures for the scripts under tools/ (they are files, not an installed package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def load_tool(name: str) -> ModuleType:
    """The module ``tools/NAME.py``, imported from its file."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> ModuleType:
    return load_tool("primitives_table")


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("sample_sheet")


@pytest.fixture(scope="module")
def frame_difference() -> ModuleType:
    return load_tool("frame_difference")
