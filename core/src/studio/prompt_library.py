"""``lib:keyword_keyword`` prompts: look a prompt up in the DreamFusion gallery prompt library.

The keywords after ``lib:`` are lower-cased and split on ``_``; a library entry matches when every
keyword is a substring of the lower-cased entry. Exactly one entry must match.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from studio.errors import ConfigError

PREFIX = "lib:"


@functools.cache
def library() -> tuple[str, ...]:
    """The 415 DreamFusion gallery prompts shipped with studio-core."""
    text = resources.files("studio.resources").joinpath("prompt_library.json").read_text("utf-8")
    return tuple(json.loads(text)["dreamfusion"])


def lookup(query: str, key: str = "prompt") -> str:
    """The single library prompt matching ``query`` (``"lib:..."``); :class:`ConfigError` otherwise."""
    keywords = [k for k in query[len(PREFIX) :].lower().split("_") if k]
    if not keywords:
        raise ConfigError(
            f"{key}: {query!r} names no keywords; write lib:keyword_keyword, e.g. "
            f"lib:hamburger or lib:cat_lion."
        )
    matches = [p for p in library() if all(k in p.lower() for k in keywords)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(
            f"{key}: no prompt of the DreamFusion library contains all of the keywords "
            f"{keywords} from {query!r}. Use fewer or different keywords, or write the prompt out."
        )
    shown = "; ".join(repr(m) for m in matches[:10])
    more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
    raise ConfigError(
        f"{key}: {query!r} matches {len(matches)} prompts of the DreamFusion library: {shown}{more}. "
        f"Add keywords (separated by _) until exactly one prompt matches."
    )


def is_library_prompt(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
