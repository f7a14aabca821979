"""From ``studio run METHOD|CONFIG.yaml key=value ...`` to a validated, fully resolved config.

Steps: preset (and user YAML, layered on the preset of the method it names) -> overrides ->
``raw`` (what the user asked for) -> ``${...}`` references, ``lib:`` prompts, derived tag ->
strict structuring of the experiment config and of every registered component config it names ->
``parsed`` (every default filled in; enough to resume).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from studio import prompt_library
from studio.config.convert import structure, unstructure
from studio.config.experiment import ExperimentConfig
from studio.config.loading import (
    apply_overrides,
    deep_merge,
    get_dotted,
    load_yaml_file,
    missing_paths,
    parse_yaml,
    resolve_references,
    set_dotted,
)
from studio.config.model_shorthand import model_overrides
from studio.errors import ConfigError, PluginError
from studio.models.embedded import check_prompts
from studio.registry import KINDS, Registration, get_registry, import_target

DEFAULT_PROMPT_KEY = "system.prompt_processor.prompt"


@dataclass
class ResolvedConfig:
    raw: dict[str, Any]
    parsed: dict[str, Any]
    experiment: ExperimentConfig
    method: Registration


def method_registration(name: str) -> Registration:
    return get_registry().get("method", name)


def prompt_key(method: Registration) -> str:
    return str(method.details.get("prompt_key", DEFAULT_PROMPT_KEY))


def load_preset(method: Registration) -> dict[str, Any]:
    """The preset YAML a method ships (``"package:path.yaml"``)."""
    spec = method.details.get("preset")
    if not spec:
        return {"method": method.name}
    package, _, relative = str(spec).partition(":")
    try:
        text = resources.files(package).joinpath(relative).read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise PluginError(
            f"The preset {spec!r} of method {method.name!r} (distribution "
            f"{method.plugin.distribution}) cannot be read: {exc}. Reinstall that distribution."
        ) from None
    data = parse_yaml(text, f"preset {spec}") or {}
    data.setdefault("method", method.name)
    return data


def compose_raw(
    source: str, overrides: list[str], prompt: str | None = None, model: str | None = None
) -> dict[str, Any]:
    """The merged, unresolved config for a method name or YAML path plus overrides.

    ``prompt`` sets the method's prompt key; ``model`` (the ``model=NAME`` shorthand) adds the
    dotted overrides of :func:`studio.config.model_shorthand.model_overrides`, computed from the
    config composed so far and applied after the user's overrides.
    """
    registry = get_registry()
    if source in registry.names("method"):
        base = load_preset(method_registration(source))
    elif source.endswith((".yaml", ".yml")) or Path(source).is_file():
        user = load_yaml_file(source)
        method_name = user.get("method")
        if not isinstance(method_name, str):
            raise ConfigError(
                f"{source} does not say which method it configures: add a top-level key "
                f"`method: <name>` (one of {', '.join(registry.names('method')) or 'none'})."
            )
        base = deep_merge(load_preset(method_registration(method_name)), user)
    else:
        method_registration(source)  # raises with close matches
        raise AssertionError("unreachable")
    raw = apply_overrides(base, overrides)
    if prompt is not None:
        set_dotted(raw, prompt_key(method_registration(raw["method"])), prompt)
    if model is not None:
        for key, value in model_overrides(raw, model, registry.names("model")).items():
            set_dotted(raw, key, value)
    return raw


def _tag_from_prompt(prompt: str) -> str:
    tag = re.sub(r"\s+", "_", prompt.strip())
    tag = re.sub(r"[^\w\-.,+]", "", tag)
    return tag[:96].strip("._") or "run"


def _resolve_library_prompts(data: Any, path: str = "") -> Any:
    if isinstance(data, dict):
        return {
            k: _resolve_library_prompts(v, f"{path}.{k}" if path else k) for k, v in data.items()
        }
    if isinstance(data, list):
        return [_resolve_library_prompts(v, f"{path}[{i}]") for i, v in enumerate(data)]
    if prompt_library.is_library_prompt(data):
        return prompt_library.lookup(data, path)
    return data


def component_kind(field_name: str) -> str | None:
    """``"geometry_type"`` -> ``"geometry"`` when that is a registered kind."""
    if not field_name.endswith("_type"):
        return None
    kind = field_name[: -len("_type")]
    return kind if kind in KINDS and kind not in ("method", "model") else None


def validate_tree(config_cls: type, data: Any, path: str) -> dict[str, Any]:
    """Structure ``data`` with ``config_cls`` and recurse into every ``<kind>_type`` sub-config.

    Returns the plain, fully defaulted mapping.
    """
    out = unstructure(structure(data, config_cls, path))
    registry = get_registry()
    for field in attrs.fields(config_cls):
        kind = component_kind(field.name)
        block = field.name[: -len("_type")] if kind else None
        if kind is None or block not in out or not out[field.name]:
            continue
        try:
            component = registry.load(kind, out[field.name])
        except PluginError as exc:
            raise ConfigError(f"{path}.{field.name}: {exc}") from None
        sub_cls = getattr(component, "Config", None)
        if sub_cls is not None and attrs.has(sub_cls):
            out[block] = validate_tree(sub_cls, out[block], f"{path}.{block}")
    return out


def resolve(raw: dict[str, Any]) -> ResolvedConfig:
    """Validate ``raw`` fully (raises :class:`ConfigError` naming dotted paths)."""
    if "method" not in raw:
        raise ConfigError("The config has no `method` key; it must name a registered method.")
    method = method_registration(str(raw["method"]))
    data = resolve_references(raw)
    missing = missing_paths(data)
    if missing:
        key = prompt_key(method)
        hints = [
            f'{m} (set it with prompt="...")' if m == key else f"{m} (set it with {m}=...)"
            for m in missing
        ]
        raise ConfigError(
            f"Invalid configuration: a required value is missing: {'; '.join(hints)}. Required "
            f"values are marked ??? in the preset."
        )
    data = _resolve_library_prompts(data)
    if not data.get("tag"):
        try:
            prompt = get_dotted(data, prompt_key(method))
        except KeyError:
            prompt = None
        data["tag"] = _tag_from_prompt(str(prompt)) if prompt else method.name

    experiment = structure(data, ExperimentConfig)
    parsed = unstructure(experiment)
    system_cls = import_target(method)
    try:
        data_cls = get_registry().load("data", experiment.data_type)
    except PluginError as exc:
        raise ConfigError(f"data_type: {exc}") from None
    parsed["system"] = validate_tree(system_cls.Config, experiment.system, "system")
    parsed["data"] = validate_tree(data_cls.Config, experiment.data, "data")
    experiment = structure(parsed, ExperimentConfig)
    check_prompts(parsed)
    return ResolvedConfig(raw=raw, parsed=parsed, experiment=experiment, method=method)


def load_experiment(
    source: str, overrides: list[str], prompt: str | None = None, model: str | None = None
) -> ResolvedConfig:
    """Compose and resolve in one go (what ``studio run`` does)."""
    return resolve(compose_raw(source, overrides, prompt, model))
