"""On-disk cache of text embeddings: one tensor file per (model, prompt).

Files live in ``$STUDIO_CACHE_DIR/text_embeddings/`` (default ``~/.cache/studio/text_embeddings/``)
and are named ``md5(f"{model}-{prompt}").pt`` -- the reference's key, so a prompt encoded once is
never encoded again by any run with the same model id. Writes are atomic (temporary file in the
same folder, then ``os.replace``): a reader never sees a half-written tensor, even when several
processes write the same key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

CACHE_ENV = "STUDIO_CACHE_DIR"


def cache_root() -> Path:
    """``$STUDIO_CACHE_DIR`` or ``~/.cache/studio``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "studio"


def embeddings_dir() -> Path:
    """The folder holding cached text embeddings (not created here)."""
    return cache_root() / "text_embeddings"


def cache_key(model: str, prompt: str) -> str:
    """``md5("{model}-{prompt}")`` in hex."""
    return hashlib.md5(f"{model}-{prompt}".encode(), usedforsecurity=False).hexdigest()


def cache_path(model: str, prompt: str, folder: Path | None = None) -> Path:
    """Where the embedding of ``prompt`` under ``model`` is stored."""
    return (folder or embeddings_dir()) / f"{cache_key(model, prompt)}.pt"


def save_embedding(path: Path, embedding: torch.Tensor) -> None:
    """Write ``embedding`` (moved to CPU) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(embedding.detach().cpu().contiguous(), handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_embedding(path: Path, device: torch.device) -> torch.Tensor:
    """Read one cached embedding onto ``device``."""
    return torch.load(path, map_location=device, weights_only=True)
