"""Strict structuring of plain YAML data into attrs config classes.

The converter refuses what would otherwise be silently coerced: a string for a number, a number
for a boolean, an unknown key. Failures become a single :class:`~studio.errors.ConfigError` whose
message names every offending dotted path and, for unknown keys, the closest valid key.
"""

from __future__ import annotations

import difflib
import functools
import math
import types
import typing
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from studio.config.bounds import check_bounds
from studio.config.schedule import Scheduled, validate_schedule
from studio.errors import ConfigError

T = TypeVar("T")


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _strict_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {_describe(value)}")


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected an integer, got {_describe(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected an integer, got the fraction {value!r}")
    return int(value)


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _make_annotated_hook(converter: cattrs.Converter):
    """``Annotated[T, Range(...), ...]``: structure as ``T``, then check the declared bounds."""

    def structure_annotated(value: object, tp: object) -> object:
        base, *metadata = typing.get_args(tp)
        out = converter.structure(value, base)
        check_bounds(out, metadata)
        return out

    return structure_annotated


def _strict_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {_describe(value)}")


def _schedule(value: object, _: type) -> object:
    return validate_schedule(value)


def _is_union(tp: object) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _type_name(tp: object) -> str:
    if tp is type(None):
        return "null"
    if tp is Scheduled:
        return "a number or schedule"
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _accepts_shape(member: object, value: object) -> bool:
    """Whether ``value`` has the container shape of union ``member`` (to pick its error)."""
    origin = typing.get_origin(member) or member
    if isinstance(value, dict):
        return attrs.has(member) or origin is dict
    if isinstance(value, (list, tuple)):
        return origin in (list, tuple)
    return False


def _make_union_hook(converter: cattrs.Converter):
    def structure_union(value: object, tp: object) -> object:
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if value is None and len(members) < len(typing.get_args(tp)):
            return None
        if len(members) == 1:  # Optional[X]: X's own (detailed) error
            return converter.structure(value, members[0])
        problems: list[tuple[object, Exception]] = []
        for member in members:
            try:
                return converter.structure(value, member)
            except Exception as exc:  # noqa: BLE001 - try the next member
                problems.append((member, exc))
        for member, exc in problems:
            if _accepts_shape(member, value):
                raise exc
        expected = " or ".join(_type_name(m) for m in typing.get_args(tp))
        raise ValueError(f"expected {expected}, got {_describe(value)}")

    return structure_union


def _literal_hook(value: object, tp: object) -> object:
    allowed = typing.get_args(tp)
    for option in allowed:
        if value == option and type(value) is type(option):
            return value
        if isinstance(option, str) and isinstance(value, int) and not isinstance(value, bool):
            if str(value) == option:  # YAML `precision: 32` for the option "32"
                return option
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}{hint}")


@functools.cache
def converter() -> cattrs.Converter:
    """The shared strict converter."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(Scheduled, _schedule)
    conv.register_unstructure_hook(Scheduled, lambda v: v)
    conv.register_structure_hook_func(_is_union, _make_union_hook(conv))
    conv.register_structure_hook_func(
        lambda tp: typing.get_origin(tp) is typing.Annotated, _make_annotated_hook(conv)
    )
    conv.register_structure_hook_func(
        lambda tp: typing.get_origin(tp) is typing.Literal, _literal_hook
    )
    conv.register_structure_hook_factory(attrs.has, _mapping_only_factory(conv))
    return conv


def _mapping_only_factory(conv: cattrs.Converter):
    """attrs classes are structured from mappings only (a scalar gets a clear message)."""

    def factory(cls: type) -> typing.Callable[[object, type], object]:
        inner = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True)

        def structure_mapping(value: object, tp: type) -> object:
            if not isinstance(value, dict):
                raise ValueError(
                    f"expected a mapping of keys (e.g. {{...}} in YAML), got {_describe(value)}"
                )
            return inner(value, tp)

        return structure_mapping

    return factory


# -- error reporting ---------------------------------------------------------------------------


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def _note_path(exc: BaseException) -> str | int | None:
    for note in getattr(exc, "__notes__", []):
        name = getattr(note, "name", None)
        if isinstance(note, IterableValidationNote):
            return note.index
        if name is not None:
            return name
    return None


def collect_problems(exc: BaseException, path: str) -> list[str]:
    """Flatten a cattrs exception tree into ``"dotted.path: what is wrong"`` lines."""
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        lines = []
        for key in sorted(exc.extra_fields):
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean {_join(path, close[0])!r}?" if close else ""
            choices = f"valid keys here: {', '.join(valid)}"
            lines.append(f"{_join(path, key)}: unknown key ({hint + ' ' if hint else ''}{choices})")
        return lines
    if isinstance(exc, BaseValidationError):
        lines = []
        for sub in exc.exceptions:
            part = _note_path(sub)
            sub_path = _join(path, part) if part is not None else path
            lines.extend(collect_problems(sub, sub_path))
        return lines
    if isinstance(exc, KeyError):
        return [f"{path}: a required value is missing"]
    return [f"{path or '(top level)'}: {exc}"]


def structure(data: object, cls: type[T], path: str = "") -> T:
    """Structure ``data`` into ``cls`` strictly; raise :class:`ConfigError` naming ``path``."""
    if data is None:
        data = {}
    if attrs.has(cls) and not isinstance(data, dict):
        raise ConfigError(
            f"Invalid configuration: {path or 'the config'} must be a mapping of keys to values, "
            f"got {_describe(data)}."
        )
    try:
        return converter().structure(data, cls)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - every structuring failure becomes a ConfigError
        problems = collect_problems(exc, path)
        raise ConfigError(config_error_text(problems)) from None


def unstructure(obj: object) -> Any:
    """Plain data (dicts, lists, scalars) for an attrs config instance."""
    return converter().unstructure(obj)


def config_error_text(problems: list[str]) -> str:
    """One paragraph describing every problem, with the override syntax that fixes it."""
    joined = "; ".join(problems)
    return (
        f"Invalid configuration: {joined}. Fix the preset/YAML or override on the command line "
        f"with key=value (for example system.guidance.guidance_scale=50)."
    )
