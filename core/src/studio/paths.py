"""Where studio keeps its caches on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """studio's cache folder (``$STUDIO_CACHE_DIR``, ``$XDG_CACHE_HOME/studio``, ``~/.cache/studio``)."""
    if os.environ.get("STUDIO_CACHE_DIR"):
        return Path(os.environ["STUDIO_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "studio"
