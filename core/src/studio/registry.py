"""Plugin discovery and the registry of named components.

Plugins are found through the entry-point group ``studio.plugins`` (see :mod:`studio.hookspecs`).
Discovery imports only the plugin modules themselves; each registration is a *name -> import path*
pair, and the target is imported by :meth:`Registry.load` when a run needs it.

Environment variable ``STUDIO_DISABLE_PLUGINS``: comma-separated entry-point names or distribution
names to skip (``STUDIO_DISABLE_PLUGINS=studio-sjc,my_plugin``).
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import attrs
import pluggy

from studio import hookspecs
from studio.errors import PluginError

ENTRY_POINT_GROUP = "studio.plugins"
DISABLE_ENV = "STUDIO_DISABLE_PLUGINS"

#: kind -> hook name, derived from the hook specs (the order of ``studio plugins list``).
KIND_HOOKS: dict[str, str] = {kind: hook for kind, (hook, _) in hookspecs.KIND_HOOKS.items()}
KINDS = tuple(KIND_HOOKS)
#: kind -> the attrs spec class its ``register`` builds.
KIND_SPECS: dict[str, type] = {kind: spec for kind, (_, spec) in hookspecs.KIND_HOOKS.items()}


@dataclass(frozen=True)
class PluginInfo:
    """One plugin module: its entry-point name and the distribution that provides it."""

    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class Registration:
    """A registered name: its kind, its typed spec (:mod:`studio.specs`) and the plugin."""

    kind: str
    spec: Any
    plugin: PluginInfo

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def target(self) -> str:
        """``"module:attr"`` to import (a method's system; ``""`` for a pipeline)."""
        return str(self.spec.target)

    @property
    def description(self) -> str:
        return str(getattr(self.spec, "description", "") or "")


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to import or to register; the CLI reports it and keeps working."""

    plugin: PluginInfo
    error: str


@dataclass(frozen=True)
class Conflict:
    """Two plugins registered the same name for the same kind."""

    kind: str
    name: str
    first: Registration
    second: Registration

    def message(self) -> str:
        return (
            f"The {self.kind} name {self.name!r} is registered twice: by plugin "
            f"{self.first.plugin.name!r} (distribution {self.first.plugin.distribution}) as "
            f"{self.first.target} and by plugin {self.second.plugin.name!r} (distribution "
            f"{self.second.plugin.distribution}) as {self.second.target}. Uninstall one of the two "
            f"distributions, or disable one with {DISABLE_ENV}={self.second.plugin.name}."
        )


class Registry:
    """Everything the installed plugins registered, per kind."""

    def __init__(self) -> None:
        self.plugins: list[PluginInfo] = []
        self.broken: list[BrokenPlugin] = []
        self.disabled: list[PluginInfo] = []
        self.conflicts: list[Conflict] = []
        #: The plugin modules that registered without error (for ``studio_register_commands``).
        self.modules: list[tuple[object, PluginInfo]] = []
        self._entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}

    # -- filling -------------------------------------------------------------------------------
    def add(self, registration: Registration) -> None:
        table = self._entries[registration.kind]
        existing = table.get(registration.name)
        if existing is not None:
            self.conflicts.append(
                Conflict(registration.kind, registration.name, existing, registration)
            )
            return
        table[registration.name] = registration

    # -- queries -------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Registration]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def by_plugin(self, plugin: PluginInfo) -> dict[str, list[str]]:
        return {kind: [r.name for r in self.entries(kind) if r.plugin == plugin] for kind in KINDS}

    def get(self, kind: str, name: str) -> Registration:
        """The registration of ``name``; a :class:`PluginError` suggesting close names if unknown."""
        self.raise_conflict(kind, name)
        table = self._entries[kind]
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        available = ", ".join(sorted(table)) or "none"
        raise PluginError(
            f"No {kind.replace('_', ' ')} named {name!r} is registered.{hint} Registered "
            f"{kind.replace('_', ' ')} names: {available}. A name comes from an installed plugin; "
            f"run `studio plugins list` to see what each plugin provides (broken or disabled "
            f"plugins are listed there too)."
        )

    def load(self, kind: str, name: str) -> Any:
        """Import and return the object registered as ``name``."""
        return import_target(self.get(kind, name))

    def raise_conflict(self, kind: str | None = None, name: str | None = None) -> None:
        """Raise for the first duplicate registration (of ``kind``/``name`` when given)."""
        for conflict in self.conflicts:
            if (kind is None or conflict.kind == kind) and (name is None or conflict.name == name):
                raise PluginError(conflict.message())


def import_target(registration: Registration) -> Any:
    """Import ``"module:attr"`` of a registration, explaining failures in one paragraph."""
    module_name, _, attr = registration.target.partition(":")
    where = f"plugin {registration.plugin.name!r} (distribution {registration.plugin.distribution})"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(
            f"The {registration.kind.replace('_', ' ')} {registration.name!r} from {where} could not "
            f"be imported ({registration.target}): {type(exc).__name__}: {exc}. Reinstall that "
            f"distribution or disable it with {DISABLE_ENV}={registration.plugin.name}."
        ) from exc
    obj: Any = module
    for part in attr.split(".") if attr else []:
        if not hasattr(obj, part):
            raise PluginError(
                f"The {registration.kind.replace('_', ' ')} {registration.name!r} from {where} "
                f"points at {registration.target}, but {module_name} has no attribute {attr!r}. "
                f"This is a bug in that plugin's registration."
            )
        obj = getattr(obj, part)
    return obj


# -- discovery ---------------------------------------------------------------------------------

_extra_plugins: list[tuple[object, PluginInfo]] = []
_cached: Registry | None = None


def _disabled_names() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _entry_points() -> Iterator[metadata.EntryPoint]:
    seen: set[str] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in seen:  # the same dist visible twice on sys.path
            seen.add(ep.name)
            yield ep


def _plugin_info(ep: metadata.EntryPoint) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return PluginInfo(ep.name, "unknown", "unknown")
    return PluginInfo(ep.name, dist.metadata["Name"], dist.version)


def _core_plugin() -> tuple[object, PluginInfo]:
    from studio import __version__, core_plugin

    return core_plugin, PluginInfo("studio", "studio-core", __version__)


def build_spec(kind: str, args: tuple[Any, ...], fields: dict[str, Any], where: str) -> Any:
    """The ``kind``'s spec from ``register``'s arguments: a spec instance, or ``name[, target]``
    plus keyword fields. Raises :class:`PluginError` naming ``where`` (the plugin) and the field."""
    spec_cls = KIND_SPECS[kind]
    if len(args) == 1 and not fields and isinstance(args[0], spec_cls):
        return args[0]
    valid = [f.name for f in attrs.fields(spec_cls)]
    primary = "system" if "system" in valid else "target"
    if len(args) > 2:
        raise PluginError(
            f"{where}: register() for a {kind} takes a name and an import path, then keyword "
            f"fields; got {len(args)} positional arguments {args!r}. Fields: {', '.join(valid)}."
        )
    named = dict(zip(("name", primary), args, strict=False))
    for key in set(named) & set(fields):
        raise PluginError(f"{where}: register() got {key!r} both by position and by keyword.")
    named.update(fields)
    unknown = [key for key in named if key not in valid]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise PluginError(
            f"{where}: register() for {kind} {named.get('name')!r} got the unknown field(s) "
            f"{', '.join(hints)}. A {kind} registration has the fields {', '.join(valid)} "
            f"(studio.specs.{spec_cls.__name__})."
        )
    try:
        return spec_cls(**named)
    except (TypeError, ValueError) as exc:
        raise PluginError(
            f"{where}: register() for {kind} {named.get('name')!r} is invalid: {exc}."
        ) from None


def _plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _collect(registry: Registry, module: object, info: PluginInfo) -> None:
    """Run every hook ``module`` implements and add what it registers to ``registry``.

    A hook implementation whose name matches no hook spec (a typo) is refused."""
    where = f"plugin {info.name!r} (distribution {info.distribution})"
    pm = _plugin_manager()
    pm.register(module, name=info.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        hooks = ", ".join(name for name in dir(hookspecs) if name.startswith("studio_register_"))
        raise PluginError(
            f"{where} implements a hook studio does not know ({exc}). Check its spelling; the "
            f"hooks are: {hooks}."
        ) from None
    pending: list[Registration] = []
    for kind, hook_name in KIND_HOOKS.items():

        def register(*args: Any, _kind: str = kind, **fields: Any) -> None:
            pending.append(Registration(_kind, build_spec(_kind, args, fields, where), info))

        getattr(pm.hook, hook_name)(register=register)
    for registration in pending:
        registry.add(registration)
    registry.modules.append((module, info))


def discover() -> Registry:
    """Build a fresh registry from core, the installed entry points and test-time plugins."""
    registry = Registry()
    disabled = _disabled_names()
    candidates: list[tuple[Callable[[], object], PluginInfo]] = []
    core_module, core_info = _core_plugin()
    candidates.append((lambda: core_module, core_info))
    for ep in _entry_points():
        candidates.append((ep.load, _plugin_info(ep)))
    for obj, info in _extra_plugins:
        candidates.append((lambda obj=obj: obj, info))

    for load, info in candidates:
        if info.name in disabled or info.distribution in disabled:
            registry.disabled.append(info)
            continue
        try:
            module = load()
            _collect(registry, module, info)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            registry.broken.append(BrokenPlugin(info, f"{type(exc).__name__}: {exc}"))
            continue
        registry.plugins.append(info)
    return registry


def get_registry() -> Registry:
    """The process-wide registry (discovered once, refreshed when plugins are added/removed)."""
    global _cached
    if _cached is None:
        _cached = discover()
    return _cached


def invalidate() -> None:
    """Forget the cached registry; the next :func:`get_registry` rediscovers."""
    global _cached
    _cached = None


def add_plugin(obj: object, name: str, distribution: str = "(test)", version: str = "0") -> None:
    """Register an in-process plugin object (used by the ``studio_plugin`` pytest fixture)."""
    _extra_plugins.append((obj, PluginInfo(name, distribution, version)))
    invalidate()


def remove_plugin(name: str) -> None:
    """Undo :func:`add_plugin`."""
    _extra_plugins[:] = [(o, i) for o, i in _extra_plugins if i.name != name]
    invalidate()


def add_commands(cli: Any, registry: Registry | None = None) -> None:
    """Let every working plugin add its subcommands to the ``studio`` app ``cli``.

    A plugin whose ``studio_register_commands`` raises is recorded as broken; the CLI keeps
    working without its commands."""
    registry = registry or get_registry()
    for module, info in list(registry.modules):
        pm = _plugin_manager()
        pm.register(module, name=info.name)
        try:
            pm.hook.studio_register_commands(cli=cli)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            registry.broken.append(
                BrokenPlugin(info, f"studio_register_commands: {type(exc).__name__}: {exc}")
            )
