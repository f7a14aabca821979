"""``studio config show METHOD``: every key of a resolved config with its value, default and doc.

:func:`config_rows` walks a resolved config the way validation does: the experiment config, the
data module's and the system's configs, every ``<kind>_type`` component's config, nested attrs
configs (``optimizer``) and the components' :meth:`~studio.base.BaseModule.sub_configs` (an
encoding's keys). Free-form mappings (``loss``, ``optimizer.args``) list their entries, documented
by the mapping's own doc. Docs are the fields' attribute docstrings (:mod:`studio.config.docs`).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import attrs

from studio.config.docs import field_docs
from studio.config.experiment import ExperimentConfig
from studio.config.resolve import ResolvedConfig, component_kind
from studio.errors import PluginError
from studio.registry import get_registry, import_target

_NO_DEFAULT = "(required)"
_UNSET = "(unset)"


@attrs.frozen
class Row:
    """One key of a resolved config."""

    key: str
    value: Any
    default: Any
    doc: str

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@functools.cache
def _typed_fields(cls: type) -> tuple[attrs.Attribute, ...]:
    """``cls``'s attrs fields with their annotations resolved to types."""
    try:
        attrs.resolve_types(cls)
    except (NameError, TypeError):
        pass  # an annotation that cannot be resolved is treated as a plain value
    return tuple(attrs.fields(cls))


def _default(field: attrs.Attribute) -> Any:
    default = field.default
    if default is attrs.NOTHING:
        return _NO_DEFAULT
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return _NO_DEFAULT
        default = default.factory()
    if attrs.has(type(default)):
        return attrs.asdict(default)
    return default


def _component_class(kind: str, name: Any) -> Optional[type]:
    if not isinstance(name, str) or not name:
        return None
    try:
        return get_registry().load(kind, name)
    except PluginError:
        return None


def _free_form(key: str, value: Any, default: Any, doc: str, root: str = "") -> list[Row]:
    """Rows for a mapping without a schema: the mapping itself when empty, else its entries
    (documented by the mapping's own doc)."""
    if not isinstance(value, dict) or not value:
        return [Row(key, value, default, doc)]
    root = root or key
    entry_doc = doc if root != key else (f"In {key}: {doc}" if doc else "")
    rows = []
    defaults = default if isinstance(default, dict) else {}
    for sub, item in value.items():
        rows += _free_form(f"{key}.{sub}", item, defaults.get(sub, _UNSET), entry_doc, root)
    return rows


def config_rows(
    config_cls: type, data: dict[str, Any], path: str = "", owner: Optional[type] = None
) -> list[Row]:
    """Rows for ``data`` structured by ``config_cls`` (``owner`` declares it: its sub-configs)."""
    docs = field_docs(config_cls)
    rows: list[Row] = []
    sub_configs: dict[str, type] = {}
    if owner is not None and hasattr(owner, "sub_configs"):
        try:
            from studio.config.convert import structure

            sub_configs = owner.sub_configs(structure(data, config_cls, path))
        except Exception:  # noqa: BLE001 - documentation must not fail on an odd config
            sub_configs = {}
    fields = _typed_fields(config_cls)
    blocks = {
        f.name[: -len("_type")]: component_kind(f.name) for f in fields if component_kind(f.name)
    }
    for field in fields:
        key = f"{path}.{field.name}" if path else field.name
        value = data.get(field.name)
        default = _default(field)
        doc = docs.get(field.name, "")
        nested_cls = field.type if isinstance(field.type, type) and attrs.has(field.type) else None
        if field.name in blocks:
            component = _component_class(blocks[field.name], data.get(f"{field.name}_type"))
            sub_cls = getattr(component, "Config", None)
            if sub_cls is not None and attrs.has(sub_cls) and isinstance(value, dict):
                rows += config_rows(sub_cls, value, key, component)
                continue
        if nested_cls is not None and isinstance(value, dict):
            rows += config_rows(nested_cls, value, key)
        elif field.name in sub_configs and isinstance(value, dict):
            rows += config_rows(sub_configs[field.name], value, key)
        elif isinstance(value, dict):
            rows += _free_form(key, value, default, doc)
        else:
            rows.append(Row(key, value, default, doc))
    return rows


def experiment_rows(resolved: ResolvedConfig, prefix: str = "") -> list[Row]:
    """Every key of a resolved experiment config, ``prefix`` (a stage name) before each key."""
    parsed = resolved.parsed
    system_cls = import_target(resolved.method)
    data_cls = get_registry().load("data", parsed["data_type"])
    top_level = {k: v for k, v in parsed.items() if k not in ("data", "system")}
    rows = [
        row
        for row in config_rows(ExperimentConfig, top_level)
        if row.key.split(".", 1)[0] not in ("data", "system")
    ]
    rows += config_rows(data_cls.Config, parsed["data"], "data", data_cls)
    rows += config_rows(system_cls.Config, parsed["system"], "system", system_cls)
    if prefix:
        rows = [attrs.evolve(r, key=f"{prefix}.{r.key}") for r in rows]
    return rows


def format_rows(rows: list[Row]) -> list[str]:
    """Two lines per key: ``key = value  (default: ...)`` then the doc, indented."""
    lines = []
    for row in rows:
        same = row.value == row.default
        default = "" if same else f"  (default: {row.default!r})"
        lines.append(f"{row.key} = {row.value!r}{default}")
        lines.append(f"    {row.doc or '(undocumented)'}")
    return lines
