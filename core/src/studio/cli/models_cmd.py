"""``studio models list``: the Hugging Face cache as a table."""

from __future__ import annotations

from studio.models.hub import format_size, hub_cache_dir, list_cached_models


def cached_models_table() -> str:
    """One row per cached model (id, size, snapshot path), or a line saying the cache is empty."""
    cache = hub_cache_dir()
    models = list_cached_models(cache)
    if not models:
        return f"no models cached (cache: {cache})"
    rows = [("MODEL", "SIZE", "PATH")]
    rows += [(m.repo_id, format_size(m.size_bytes), str(m.path)) for m in models]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  {r[2]}" for r in rows]
    return "\n".join([*lines, f"cache: {cache}"])
