"""Build Hugging Face hub cache folders by hand (blobs, snapshot symlinks, refs) for tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def make_cached_repo(
    cache: Path,
    repo_id: str,
    files: dict[str, bytes],
    *,
    commit: str = "0123456789abcdef0123456789abcdef01234567",
    with_ref: bool = True,
    repo_type: str = "model",
) -> Path:
    """Lay out ``files`` as huggingface_hub's cache does; returns the snapshot folder."""
    storage = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    blobs = storage / "blobs"
    snapshot = storage / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if with_ref:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / "main").write_text(commit)
    return snapshot
