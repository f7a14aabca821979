"""load_nerfacc_backend imports nerfacc's backend module while holding the inter-process lock
(checked with a stand-in nerfacc package whose backend records whether the lock is held)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from studio_dreamfusion.renderers.nerfacc_build import LOCK_NAME, load_nerfacc_backend

FAKE_BACKEND = """
import fcntl, os
path = os.environ["STUDIO_TEST_NERFACC_LOCK"]
with open(path, "a") as handle:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a second open file: must be refused
        LOCK_HELD = False
        fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        LOCK_HELD = True
"""


@pytest.fixture
def fake_nerfacc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "site" / "nerfacc"
    (package / "cuda").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cuda" / "__init__.py").write_text("")
    (package / "cuda" / "_backend.py").write_text(FAKE_BACKEND)
    for name in [m for m in sys.modules if m == "nerfacc" or m.startswith("nerfacc.")]:
        monkeypatch.delitem(sys.modules, name)  # a real nerfacc (GPU machine) stays untouched
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield tmp_path / "locks"
    for name in [m for m in sys.modules if m == "nerfacc" or m.startswith("nerfacc.")]:
        del sys.modules[name]


def test_backend_is_imported_under_the_lock(
    fake_nerfacc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_TEST_NERFACC_LOCK", str(fake_nerfacc / LOCK_NAME))
    load_nerfacc_backend(lock_dir=fake_nerfacc)
    assert sys.modules["nerfacc.cuda._backend"].LOCK_HELD is True
