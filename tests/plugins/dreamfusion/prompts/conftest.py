"""Tiny-model tests here run single-threaded (see ``torch_single_thread``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _single_thread(torch_single_thread: None) -> None:
    """Apply ``torch_single_thread`` to every module of this folder."""
