"""The declared type of a dotted config key, looked up through the config classes.

:func:`field_type` walks a (composed, unresolved) config the way validation will: the experiment
config, the method's system config, the data module's config, and every ``<kind>_type``
component's config and nested attrs config on the way. Command-line overrides use it to keep the
user's text for text-typed keys (:func:`is_text`): ``prompt=no`` is the prompt "no", not YAML's
``False``.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Optional

import attrs

from studio.config.experiment import ExperimentConfig
from studio.errors import PluginError
from studio.registry import KINDS, get_registry, import_target


@functools.cache
def _fields(cls: type) -> dict[str, attrs.Attribute]:
    try:
        attrs.resolve_types(cls)
    except (NameError, TypeError):
        pass
    return {f.name: f for f in attrs.fields(cls)}


def _strip(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X``."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def is_text(tp: Any) -> bool:
    """Whether ``tp`` is ``str`` or an optional ``str`` (the user's text is kept as typed)."""
    tp = _strip(tp)
    if tp is str:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [_strip(m) for m in typing.get_args(tp)]
        return str in members and all(m in (str, type(None)) for m in members)
    return False


def _component_config(kind: str, name: Any) -> Optional[type]:
    if not isinstance(name, str) or not name:
        return None
    try:
        cls = get_registry().load(kind, name)
    except PluginError:
        return None
    config = getattr(cls, "Config", None)
    return config if config is not None and attrs.has(config) else None


def _system_config(raw: dict[str, Any]) -> Optional[type]:
    try:
        cls = import_target(get_registry().get("method", str(raw.get("method"))))
    except PluginError:
        return None
    config = getattr(cls, "Config", None)
    return config if config is not None and attrs.has(config) else None


def field_type(raw: dict[str, Any], key: str) -> Any:
    """The declared type of ``key`` in the config ``raw`` composes to; None when unknown (a key of
    a free-form mapping, an unregistered component, a misspelt key)."""
    parts = key.split(".")
    head = parts[0]
    if head == "system":
        cls, node = _system_config(raw), raw.get("system") or {}
    elif head == "data":
        cls, node = (
            _component_config("data", raw.get("data_type", "random-camera")),
            raw.get("data") or {},
        )
    else:
        cls, node, parts = ExperimentConfig, raw, ["", *parts]
    for depth, part in enumerate(parts[1:], start=1):
        if cls is None:
            return None
        field = _fields(cls).get(part)
        if field is None:
            return None
        if depth == len(parts) - 1:
            return field.type
        sibling = f"{part}_type"
        if part in KINDS and sibling in _fields(cls):
            cls = _component_config(part, node.get(sibling) if isinstance(node, dict) else None)
        else:
            inner = _strip(field.type)
            if typing.get_origin(inner) in (typing.Union, types.UnionType):
                inner = next((m for m in typing.get_args(inner) if attrs.has(m)), None)
            cls = inner if isinstance(inner, type) and attrs.has(inner) else None
        node = node.get(part) if isinstance(node, dict) else None
    return None
