"""Reading configs: YAML files, ``a.b.c=value`` overrides, merging and ``${...}`` references.

All functions here work on plain data (dicts, lists, scalars) and import no torch.

* Values on the command line are parsed as YAML scalars/lists: ``x=5`` is an int, ``x=5.`` and
  ``x=1e-3`` are floats, ``x=[1,2]`` a list, ``x=a red cube`` a string.
* ``${dotted.path}`` anywhere in a string refers to another value of the same config; a string
  that is exactly one reference takes the referenced value with its type.
* ``???`` marks a value the user must provide (a preset's prompt, for example).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Optional

import yaml

from studio.errors import ConfigError

MISSING = "???"
_REFERENCE = re.compile(r"\$\{([^}]+)\}")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d+\.\d*|\.\d+)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; a syntax error becomes a :class:`ConfigError` naming ``source``."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}".replace("\n", " ")) from None


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Config file {str(path)!r} does not exist. Pass a method name (see `studio methods`) "
            f"or the path of a YAML config."
        )
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values at the top level.")
    return data


def dump_yaml(data: Any) -> str:
    """YAML text for plain data, keys in insertion order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)


def parse_override(token: str) -> tuple[str, Any]:
    """``"a.b.c=value"`` -> ``("a.b.c", parsed value)``."""
    key, sep, raw = token.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key):
        raise ConfigError(
            f"Cannot read the command-line override {token!r}: overrides look like "
            f'dotted.key=value, e.g. system.guidance.guidance_scale=50 or prompt="a red cube".'
        )
    value = parse_yaml(raw, f"the value of {key}") if raw.strip() else None
    if isinstance(value, str) and _FLOAT.match(value):
        value = float(value)
    return key, value


#: The YAML words for null; a text key (an optional string) given one of these is None.
NULL_WORDS = ("", "~", "null", "Null", "NULL")


def override_text(token: str) -> tuple[str, str]:
    """``"a.b=some text"`` -> ``("a.b", "some text")``: the value as the user typed it."""
    key, _sep, raw = token.partition("=")
    return key.strip(), raw


def text_value(raw: str, optional: bool) -> Optional[str]:
    """What a text-typed key holds for the typed ``raw``: the text itself, however YAML would read
    it (``no``, ``a sky: at dusk``, ``42``); a quoted YAML string without its quotes; None for a
    YAML null word when the key is optional."""
    stripped = raw.strip()
    if optional and stripped in NULL_WORDS:
        return None
    if stripped[:1] in ("'", '"') and stripped[-1:] == stripped[:1] and len(stripped) > 1:
        try:
            parsed = yaml.load(stripped, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, str):
            return parsed
    return raw


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``key = "a.b.c"``, creating mappings on the way."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise ConfigError(
                f"Cannot set {key}: {prefix} holds the value {child!r}, not a mapping of keys."
            )
        node = child
    node[parts[-1]] = value


def get_dotted(data: dict[str, Any], key: str) -> Any:
    """``data[a][b][c]`` for ``"a.b.c"``; ``KeyError`` naming the key when absent."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` merged into ``base``; nested mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with every ``key=value`` override applied in order."""
    result = copy.deepcopy(data)
    for token in overrides:
        key, value = parse_override(token)
        set_dotted(result, key, value)
    return result


def resolve_references(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with every ``${dotted.path}`` replaced by the value it names."""
    resolving: list[str] = []

    def lookup(path: str, where: str) -> Any:
        if path in resolving:
            cycle = " -> ".join([*resolving, path])
            raise ConfigError(f"Config references form a cycle: {cycle}.")
        try:
            target = get_dotted(data, path)
        except KeyError:
            raise ConfigError(
                f"{where} refers to ${{{path}}}, but the config has no key {path!r}."
            ) from None
        resolving.append(path)
        try:
            return visit(target, path)
        finally:
            resolving.pop()

    def visit(node: Any, where: str) -> Any:
        if isinstance(node, dict):
            return {k: visit(v, f"{where}.{k}" if where else k) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str):
            whole = _REFERENCE.fullmatch(node.strip())
            if whole:
                return lookup(whole.group(1).strip(), where)
            return _REFERENCE.sub(lambda m: str(lookup(m.group(1).strip(), where)), node)
        return node

    return visit(data, "")


def missing_paths(data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every value still set to ``???``."""
    if isinstance(data, dict):
        found: list[str] = []
        for key, value in data.items():
            found.extend(missing_paths(value, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in missing_paths(v, f"{prefix}[{i}]")]
    return [prefix] if data == MISSING else []
