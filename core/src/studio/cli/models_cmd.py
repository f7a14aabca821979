"""``studio models list``: the Hugging Face cache and the plugins' embedded models as tables."""

from __future__ import annotations

from collections.abc import Sequence

from studio.models.hub import format_size, hub_cache_dir, list_cached_models


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows aligned in columns: the first left-aligned, the second right-aligned, the rest as is."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
        cells += [cell.ljust(widths[i]) for i, cell in enumerate(row[2:-1], start=2)]
        lines.append("  ".join([*cells, row[-1]]))
    return lines


def cached_models_table() -> str:
    """One row per cached model (id, size, snapshot path), or a line saying the cache is empty."""
    cache = hub_cache_dir()
    models = list_cached_models(cache)
    if not models:
        return f"no models cached (cache: {cache})"
    rows = [("MODEL", "SIZE", "PATH")]
    rows += [(m.repo_id, format_size(m.size_bytes), str(m.path)) for m in models]
    return "\n".join([*_table(rows), f"cache: {cache}"])


def embedded_models_table() -> str:
    """One row per model registered by a plugin (name, size, distribution, folder), or ``""``.

    A model whose folder cannot be located shows ``-`` as size and the reason instead of a path.
    """
    from studio.models.embedded import folder_size, list_embedded

    entries = list_embedded()
    if not entries:
        return ""
    rows = [("EMBEDDED MODEL", "SIZE", "PLUGIN", "PATH")]
    for registration, found in entries:
        if isinstance(found, str):
            size, where = "-", f"(unavailable) {found}"
        else:
            size, where = format_size(folder_size(found)), str(found)
        rows.append((registration.name, size, registration.plugin.distribution, where))
    return "\n".join(_table(rows))


def models_report() -> str:
    """What ``studio models list`` prints: the cache table, then the embedded models, if any."""
    embedded = embedded_models_table()
    return cached_models_table() + (f"\n\n{embedded}" if embedded else "")
