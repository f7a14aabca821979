"""Embedded models: pretrained pipelines that plugins ship and register by name.

A plugin implements ``studio_register_models`` (see :mod:`studio.hookspecs`) and registers
``name -> "module:attr"`` of a zero-argument callable returning the model's local folder. Nothing
is imported at discovery; :func:`locate` imports and calls the callable when a config names the
model. :func:`studio.models.hub.resolve_model` consults it after local folders and before the hub.

Every failure (conflicting names, a target that does not import, a callable that raises or
returns no folder) raises :class:`~studio.errors.ModelNotAvailableError`, one paragraph
naming the model, the plugin and its distribution.

A registration may add ``prompt_check="module:function"``: a model that understands only a small
vocabulary rejects other prompts before anything is created (:func:`prompt_check_of`; config
resolution calls it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Optional

import attrs

from studio.errors import ModelNotAvailableError, PluginError
from studio.registry import Registration, get_registry, import_target

KIND = "model"

#: The setting a model name came from, for messages (callers pass their dotted config key).
DEFAULT_CONFIG_KEY = "pretrained_model_name_or_path"


class EmbeddedModel(NamedTuple):
    """A located embedded model: its registration and its folder."""

    registration: Registration
    path: Path

    @property
    def name(self) -> str:
        return self.registration.name


def registered_names() -> list[str]:
    """Names of every model registered by the installed plugins, sorted."""
    return get_registry().names(KIND)


def provider(registration: Registration) -> str:
    """``plugin 'x' (distribution y)`` for messages."""
    return f"plugin {registration.plugin.name!r} (distribution {registration.plugin.distribution})"


def locate(name: str, config_key: str = DEFAULT_CONFIG_KEY) -> Optional[EmbeddedModel]:
    """The folder of the registered model ``name``; None when no plugin registers that name.

    Imports and calls the registered callable. ``config_key`` names the setting the name came
    from, for the error messages. Raises :class:`ModelNotAvailableError`.
    """
    registry = get_registry()
    if name not in registry.names(KIND):
        return None
    try:
        registration = registry.get(KIND, name)
        locator = import_target(registration)
    except PluginError as exc:
        raise ModelNotAvailableError(str(exc)) from exc
    advice = f"Reinstall that distribution, or pass the folder of a complete model as {config_key}."
    try:
        folder = locator()
        path = Path(os.fspath(folder)).expanduser()
    except Exception as exc:
        raise ModelNotAvailableError(
            f"The embedded model {name!r} from {provider(registration)} could not give its folder: "
            f"{registration.target}() raised {type(exc).__name__}: {exc}. {advice}"
        ) from exc
    if not path.is_dir():
        raise ModelNotAvailableError(
            f"The embedded model {name!r} from {provider(registration)} points at {path}, which is "
            f"not a folder (an incomplete installation?). {advice}"
        )
    return EmbeddedModel(registration, path)


def list_embedded() -> list[tuple[Registration, Path | str]]:
    """Every registered model with its folder, or the one-paragraph reason it cannot be located."""
    rows: list[tuple[Registration, Path | str]] = []
    registry = get_registry()
    for registration in registry.entries(KIND):
        try:
            found = locate(registration.name)
        except ModelNotAvailableError as exc:
            rows.append((registration, str(exc)))
            continue
        assert found is not None
        rows.append((registration, found.path))
    return rows


def folder_size(path: Path) -> int:
    """Bytes in the regular files under ``path`` (symbolic links are not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for file in files:
            full = os.path.join(root, file)
            if not os.path.islink(full):
                total += os.stat(full).st_size
    return total


def prompt_check_of(name: str) -> Optional[Callable[[str, str], None]]:
    """The ``prompt_check`` function of the registered model ``name`` (its
    :class:`~studio.specs.ModelSpec`), imported; None when the name is not a registered model,
    a local folder of that name exists (it is not the registered model) or it declares none."""
    registry = get_registry()
    if name not in registry.names(KIND) or Path(name).expanduser().is_dir():
        return None
    registration = registry.get(KIND, name)
    target = registration.spec.prompt_check
    if not target:
        return None
    check_spec = attrs.evolve(registration.spec, target=target, prompt_check=None)
    return import_target(Registration(KIND, check_spec, registration.plugin))


def canonical_prompt(name: str, prompt: str, negative_prompt: str = "") -> str:
    """The prompt to encode for the model ``name``: what its ``prompt_check`` returns when that
    is a string (the model's canonical form of ``prompt``, e.g. the caption a small model was
    trained on), else ``prompt`` unchanged (not a registered model, a local folder of that name,
    no check, or a check that returns None). The check raises for a prompt the model cannot
    follow."""
    check = prompt_check_of(name)
    if check is None:
        return prompt
    canonical = check(prompt, negative_prompt)
    return canonical if isinstance(canonical, str) else prompt
