"""On-disk cache of text embeddings: one tensor file per (model, prompt).

Files live in ``text_embeddings/`` of studio's cache folder (:func:`studio.paths.cache_dir`:
``$STUDIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/studio``, else ``~/.cache/studio``)
and are named ``md5(f"{model}-{prompt}").pt`` -- the reference's key, so a prompt encoded once is
never encoded again by any run with the same model id. A model that is a local folder (or an
embedded model a plugin ships) can change under the same name -- retrained, reinstalled -- so its
id carries a fingerprint of its text-encoder files (:func:`model_cache_id`). Writes are atomic (temporary file in the
same folder, then ``os.replace``): a reader never sees a half-written tensor, even when several
processes write the same key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from studio.api import ModelNotAvailableError, cache_dir
from studio.api import locate_embedded_model as locate


def embeddings_dir() -> Path:
    """The folder holding cached text embeddings (not created here)."""
    return cache_dir() / "text_embeddings"


def cache_key(model: str, prompt: str) -> str:
    """``md5("{model}-{prompt}")`` in hex."""
    return hashlib.md5(f"{model}-{prompt}".encode(), usedforsecurity=False).hexdigest()


#: Subfolders of a pipeline whose files decide the text embeddings.
TEXT_SUBFOLDERS = ("text_encoder", "tokenizer")


def local_model_folder(name: str) -> Optional[Path]:
    """The folder ``name`` stands for when it is a local folder or an embedded model, without
    touching the network; None for anything else (a hub id)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    try:
        found = locate(name)
    except ModelNotAvailableError:
        return None
    return found.path if found else None


def folder_fingerprint(folder: Path) -> str:
    """8 hex digits from the relative path, size and modification time of every file in the
    text-encoder subfolders of ``folder`` (the whole folder when it has none)."""
    roots = [folder / sub for sub in TEXT_SUBFOLDERS if (folder / sub).is_dir()] or [folder]
    digest = hashlib.md5(usedforsecurity=False)
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:8]


def model_cache_id(name: str) -> str:
    """The model part of the cache key: ``name`` for a hub id (the reference's key), and
    ``name@fingerprint`` for a local folder or an embedded model."""
    folder = local_model_folder(name)
    return f"{name}@{folder_fingerprint(folder)}" if folder is not None else name


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
