"""A fixture for the lighting tests: studio's cache folder redirected to a temporary one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$STUDIO_CACHE_DIR`` in a temporary folder for the test module, so the tests never write
    the split-sum table into the user's cache. Import it into a test module to use it."""
    folder = tmp_path_factory.mktemp("studio-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_CACHE_DIR", str(folder))
        yield folder
