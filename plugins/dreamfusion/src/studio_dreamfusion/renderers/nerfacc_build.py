"""Load nerfacc's CUDA extension one process at a time.

nerfacc (0.5) compiles its CUDA code on first use into torch's extension folder, and its loader
lists (and on failure deletes) that folder without a lock: processes that reach the build together
(several ``studio run`` started at once on a fresh machine) fail with a ``FileNotFoundError`` from
inside nerfacc. :func:`load_nerfacc_backend` imports nerfacc's backend module under an
inter-process file lock, so the first process builds and the others wait, then load the result.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

#: The nerfacc module whose import builds or loads the CUDA extension.
BACKEND_MODULE = "nerfacc.cuda._backend"
LOCK_NAME = "nerfacc-build.lock"


def load_nerfacc_backend(lock_dir: Optional[Path] = None, timeout_s: float = 1800.0) -> None:
    """Import :data:`BACKEND_MODULE` while holding ``LOCK_NAME`` in ``lock_dir`` (default:
    studio's cache folder). Errors of the import itself propagate unchanged; waiting longer than
    ``timeout_s`` for another process's build raises ``filelock.Timeout``."""
    from filelock import FileLock

    from studio.api import cache_dir

    folder = Path(lock_dir) if lock_dir is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / LOCK_NAME), timeout=timeout_s):
        importlib.import_module(BACKEND_MODULE)
