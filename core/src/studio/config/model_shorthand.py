"""``studio run METHOD model=NAME``: one name for the pretrained model of guidance and prompts.

The shorthand sets the method's ``model_keys`` (:class:`studio.specs.MethodSpec`, those present in
the composed config) to the model that fits the config's guidance type (read at the method's
``guidance_type_key``): a plugin shipping a model family ``NAME`` registers one variant per
guidance, ``NAME`` plus that guidance's ``model_suffix`` (:class:`studio.specs.GuidanceSpec`), and
the variant of the config's guidance is chosen. Otherwise ``NAME`` is passed through unchanged (a
registered name, a folder path or a hub id, resolved later by model resolution).

Everything here reads what plugins registered; no method's keys or guidance names are written
into core.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Optional

from studio.config.loading import get_dotted, resolve_references
from studio.errors import ConfigError
from studio.registry import Registry
from studio.specs import MethodSpec


def guidance_suffixes(registry: Registry) -> dict[str, str]:
    """``guidance name -> model_suffix`` of every registered guidance that declares one."""
    return {
        entry.name: entry.spec.model_suffix
        for entry in registry.entries("guidance")
        if entry.spec.model_suffix
    }


def model_for_guidance(
    name: str,
    guidance_type: Optional[str],
    registered: Collection[str],
    suffixes: Mapping[str, str],
) -> str:
    """The model name ``model=NAME`` stands for under ``guidance_type``.

    ``NAME + suffix`` when that variant is registered (``suffixes[guidance_type]``); else ``NAME``
    itself (registered, a folder path or a hub id: passed through). Raises :class:`ConfigError`
    when the guidance has a suffix, neither ``NAME`` nor ``NAME + suffix`` is registered, but the
    variant for *another* guidance is (``model=x`` with an ``-if`` guidance when only ``x-sd``
    exists): passing ``x`` on to the hub would only fail later and less clearly.
    """
    suffix = suffixes.get(guidance_type) if guidance_type is not None else None
    if suffix is not None and name + suffix in registered:
        return name + suffix
    if suffix is None or name in registered:
        return name
    others = [
        f"{name}{other} (for guidance {kind})"
        for kind, other in suffixes.items()
        if other != suffix and name + other in registered
    ]
    if others:
        raise ConfigError(
            f"model={name}: the config's guidance is {guidance_type!r}, which needs the model "
            f"'{name}{suffix}', but only {', '.join(others)} is registered. Switch the guidance "
            "(its *_type keys, or a method preset using that guidance), or give a model for "
            f"{guidance_type!r} (a registered name, a folder or a hub id); to pass {name!r} "
            "through as it is, set the model keys directly as dotted.key=value."
        )
    return name


def _guidance_type(raw: dict[str, Any], key: Optional[str]) -> Optional[str]:
    if key is None:
        return None
    try:
        value = get_dotted(resolve_references(raw), key)
    except (KeyError, ConfigError):
        return None
    return value if isinstance(value, str) else None


def model_overrides(
    raw: dict[str, Any],
    name: str,
    method: MethodSpec,
    registered: Collection[str],
    suffixes: Mapping[str, str],
) -> dict[str, str]:
    """The dotted overrides (key -> model name) ``model=NAME`` adds to the composed ``raw``.

    Raises :class:`ConfigError` when ``raw`` has none of the method's ``model_keys`` (its guidance
    loads no pretrained model) or when the name cannot fit the guidance (see
    :func:`model_for_guidance`).
    """
    keys = [key for key in method.model_keys if _has(raw, key)]
    if not keys:
        where = (
            f"has neither {' nor '.join(method.model_keys)} in its config"
            if method.model_keys
            else "declares no model keys"
        )
        raise ConfigError(
            f"model={name}: method {method.name!r} {where}, so there is no pretrained model to "
            "set. The model shorthand (model=NAME or --model NAME) needs a "
            "method whose guidance loads a pretrained model (see `studio methods`); drop it, or "
            "set the key your method uses directly as dotted.key=value."
        )
    model = model_for_guidance(
        name, _guidance_type(raw, method.guidance_type_key), registered, suffixes
    )
    return {key: model for key in keys}


def _has(raw: dict[str, Any], key: str) -> bool:
    try:
        get_dotted(raw, key)
    except KeyError:
        return False
    return True
