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
from typing import Any, Optional

import attrs

from studio import prompt_library
from studio.config.convert import structure, unstructure
from studio.config.experiment import ExperimentConfig
from studio.config.loading import (
    MISSING,
    deep_merge,
    get_dotted,
    load_yaml_file,
    missing_paths,
    override_text,
    parse_override,
    parse_yaml,
    resolve_references,
    set_dotted,
    text_value,
)
from studio.config.model_shorthand import guidance_suffixes, model_overrides
from studio.config.schema import field_type, is_text
from studio.errors import ConfigError, PluginError
from studio.models.embedded import prompt_check_of
from studio.registry import KINDS, Registration, get_registry, import_target
from studio.specs import MethodSpec

#: The preset key naming another method whose preset this one inherits.
EXTENDS = "extends"


@dataclass
class ResolvedConfig:
    raw: dict[str, Any]
    parsed: dict[str, Any]
    experiment: ExperimentConfig
    method: Registration


def method_registration(name: str) -> Registration:
    return get_registry().get("method", name)


def method_spec(name: str) -> MethodSpec:
    return method_registration(name).spec


def prompt_key(method: Registration) -> Optional[str]:
    """The dotted key the method's prompt lives at (None: the method takes no prompt)."""
    return method.spec.prompt_key


def _read_preset(method: Registration) -> dict[str, Any]:
    spec = method.spec.preset
    if not spec:
        return {}
    package, _, relative = str(spec).partition(":")
    try:
        text = resources.files(package).joinpath(relative).read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise PluginError(
            f"The preset {spec!r} of method {method.name!r} (distribution "
            f"{method.plugin.distribution}) cannot be read: {exc}. Reinstall that distribution."
        ) from None
    data = parse_yaml(text, f"preset {spec}") or {}
    if not isinstance(data, dict):
        raise PluginError(f"The preset {spec!r} of method {method.name!r} is not a mapping.")
    return data


def load_preset(method: Registration, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The preset YAML a method ships (``"package:path.yaml"``), with ``extends: OTHER`` applied:
    OTHER's preset (itself possibly extending another) with this preset merged on top
    (:func:`merge_preset`). The result names this method (``method: NAME``) and has no
    ``extends`` key."""
    if method.spec.is_pipeline:
        raise ConfigError(
            f"{' -> '.join(_chain) or 'A preset'} extends {method.name!r}, which is a pipeline of "
            "stages; a preset can extend single-stage methods only (one of its stages, e.g. "
            f"{method.spec.stages[0].method!r})."
        )
    chain = (*_chain, method.name)
    data = _read_preset(method)
    parent = data.pop(EXTENDS, None)
    if parent is not None:
        if not isinstance(parent, str):
            raise PluginError(
                f"The preset of method {method.name!r}: `{EXTENDS}:` must name one method, got "
                f"{parent!r}."
            )
        if parent in chain:
            raise PluginError(
                f"Presets extend each other in a cycle: {' -> '.join([*chain, parent])}."
            )
        try:
            parent_registration = method_registration(parent)
        except PluginError as exc:
            raise PluginError(
                f"The preset of method {method.name!r} extends {parent!r}: {exc}"
            ) from None
        data = merge_preset(load_preset(parent_registration, chain), data)
    data["method"] = method.name
    return data


def merge_preset(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` merged into ``parent`` as :func:`deep_merge` does, except that where the child
    names another component (``geometry_type`` differs), the parent's block for it (``geometry``)
    is dropped, and where a child mapping names another network (its ``otype`` differs: a
    ``HashGrid`` replacing a ``ProgressiveBandHashGrid``) it replaces the parent's mapping:
    another component or network has another config."""
    if "otype" in child and child["otype"] != parent.get("otype"):
        return deep_merge({}, child)
    parent = dict(parent)
    for key, value in child.items():
        if key.endswith("_type") and value != parent.get(key):
            parent.pop(key[: -len("_type")], None)
    merged = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(parent.get(key), dict):
            merged[key] = merge_preset(parent[key], value)
        else:
            merged[key] = value
    return deep_merge({}, merged)


def compose_raw(
    source: str, overrides: list[str], prompt: str | None = None, model: str | None = None
) -> dict[str, Any]:
    """The merged, unresolved config for a single-stage method name or YAML path plus overrides.

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
    method = method_registration(str(base["method"]))
    raw = apply_user_overrides(base, expand_method_shorthands(overrides, [("", method.spec)]))
    apply_shorthands(raw, prompt, model)
    return raw


def expand_method_shorthands(
    overrides: list[str], methods: list[tuple[str, MethodSpec]]
) -> list[str]:
    """``overrides`` with every ``NAME=value`` token of a method's own shorthands
    (:attr:`MethodSpec.shorthands`) written out as its dotted key, the value's text unchanged.

    ``methods`` pairs a key prefix with each method: ``""`` for a single-stage method, ``"STAGE."``
    for each stage of a pipeline, where ``NAME=value`` becomes one override per stage that
    declares ``NAME`` and ``STAGE.NAME=value`` that stage's alone. A token no method declares is
    left as it is."""
    expanded: list[str] = []
    for token in overrides:
        name, sep, rest = token.partition("=")
        targets = []
        for prefix, spec in methods if sep else ():
            keys = dict(spec.shorthands)
            short = name[len(prefix) :] if prefix and name.startswith(prefix) else name
            if short in keys:
                targets.append(f"{prefix}{keys[short]}{sep}{rest}")
        expanded.extend(targets or [token])
    return expanded


def apply_user_overrides(base: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``base`` with the command line's ``key=value`` overrides applied in order: values are read
    as YAML, except for keys whose declared type is text (prompts, names, tags, paths), which keep
    the text as typed (:func:`studio.config.loading.text_value`)."""
    raw = deep_merge({}, base)
    for token in overrides:
        key, text = override_text(token)
        declared = field_type(raw, key) if "=" in token else None
        if declared is not None and is_text(declared):
            parse_override(f"{key}=")  # the key's syntax, as for any override
            set_dotted(raw, key, text_value(text, optional=declared is not str))
        else:
            set_dotted(raw, *parse_override(token))
    return raw


def apply_shorthands(raw: dict[str, Any], prompt: str | None, model: str | None) -> None:
    """Set ``prompt`` at the method's prompt key and ``model=NAME``'s keys, in place."""
    method = method_registration(str(raw["method"]))
    if prompt is not None:
        key = prompt_key(method)
        if key is None:
            raise ConfigError(
                f"prompt={prompt!r}: method {method.name!r} takes no prompt (it registers no "
                "prompt_key). Drop prompt=..., or set the key the method uses as dotted.key=value."
            )
        set_dotted(raw, key, prompt)
    if model is not None:
        registry = get_registry()
        overrides = model_overrides(
            raw, model, method.spec, registry.names("model"), guidance_suffixes(registry)
        )
        for key, value in overrides.items():
            set_dotted(raw, key, value)


def check_path_part(key: str, value: Any) -> None:
    """``name`` and ``tag`` become folder names under ``exp_root_dir``: one plain name each."""
    if not isinstance(value, str):
        return
    if key == "name" and not value.strip():
        raise ConfigError("name='': give the experiment a name (runs go to exp_root_dir/name/).")
    if "/" in value or "\\" in value or value in (".", "..") or "\0" in value:
        raise ConfigError(
            f"{key}={value!r}: {key} names one folder below exp_root_dir, so it cannot hold a path "
            f"separator or be '.' or '..'. Use a plain name (e.g. {key}=my-run); to place runs "
            "elsewhere, set exp_root_dir=PATH."
        )


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


def with_default_mappings(config_cls: type, data: Any) -> Any:
    """``data`` with each mapping merged onto its field's default mapping, so that
    ``system.geometry.mlp_network_config.n_neurons=32`` changes one key of the default network
    instead of replacing it. A mapping naming another ``otype`` than the default's replaces it."""
    if not isinstance(data, dict) or not attrs.has(config_cls):
        return data
    merged = dict(data)
    for field in attrs.fields(config_cls):
        value = merged.get(field.name)
        factory = field.default
        if not isinstance(value, dict) or not isinstance(factory, attrs.Factory):  # type: ignore[arg-type]
            continue
        if factory.takes_self:
            continue
        default = factory.factory()
        if not isinstance(default, dict) or not default:
            continue
        if "otype" in value and str(value["otype"]).lower() != str(default.get("otype")).lower():
            continue
        merged[field.name] = deep_merge(default, value)
    return merged


def validate_tree(config_cls: type, data: Any, path: str, owner: Any = None) -> dict[str, Any]:
    """Structure ``data`` with ``config_cls`` and recurse into every ``<kind>_type`` sub-config.

    ``owner`` (the class declaring ``config_cls``) may check what structuring cannot: its
    ``validate_config(cfg, path)`` classmethod (free-form dict sub-configs such as encodings) runs
    on the structured config. Returns the plain, fully defaulted mapping.
    """
    cfg = structure(with_default_mappings(config_cls, data), config_cls, path)
    validate = getattr(owner, "validate_config", None)
    if validate is not None:
        validate(cfg, path)
    out = unstructure(cfg)
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
            out[block] = validate_tree(sub_cls, out[block], f"{path}.{block}", component)
    return out


def check_prompts(config: dict[str, Any], method: MethodSpec) -> None:
    """Call the ``prompt_check`` of every embedded model the resolved ``config`` names at the
    method's ``model_keys`` with the config's prompt and negative prompt. Raises
    :class:`ConfigError` naming the model and the key."""
    checked: set[str] = set()
    for key in method.model_keys:
        name = _dotted(config, key)
        if not isinstance(name, str) or name in checked:
            continue
        checked.add(name)
        check = prompt_check_of(name)
        if check is None:
            continue
        prompt, negative = (
            str(_dotted(config, k) or "") if k else ""
            for k in (method.prompt_key, method.negative_prompt_key)
        )
        try:
            check(prompt, negative)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(
                f"{method.prompt_key or 'prompt'}: the embedded model {name!r} (set by {key}) "
                f"cannot follow this prompt. {exc}"
            ) from None


def _dotted(config: dict[str, Any], key: str) -> Any:
    try:
        return get_dotted(config, key)
    except KeyError:
        return None


def resolve(raw: dict[str, Any], allow_missing: bool = False) -> ResolvedConfig:
    """Validate ``raw`` fully (raises :class:`ConfigError` naming dotted paths).

    ``allow_missing`` keeps required values (``???``) as they are instead of refusing them (for
    showing a preset's config without a prompt); such a config is not runnable."""
    if "method" not in raw:
        raise ConfigError("The config has no `method` key; it must name a registered method.")
    method = method_registration(str(raw["method"]))
    if method.spec.is_pipeline:
        raise ConfigError(
            f"method {method.name!r} is a pipeline of stages "
            f"({', '.join(s.name for s in method.spec.stages)}); a config file configures one "
            f"stage's method. Run `studio run {method.name}` or name a stage's method."
        )
    data = resolve_references(raw)
    missing = missing_paths(data)
    if missing and not allow_missing:
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
    key = prompt_key(method)
    if key and not missing:
        prompt = _dotted(data, key)
        if isinstance(prompt, str) and not prompt.strip():
            raise ConfigError(
                f'{key}: the prompt is empty. Give the text to create, e.g. prompt="a red cube".'
            )
    if not data.get("tag"):
        prompt = _dotted(data, prompt_key(method)) if prompt_key(method) else None
        given = prompt and prompt != MISSING
        data["tag"] = _tag_from_prompt(str(prompt)) if given else method.name

    for part in ("name", "tag"):
        check_path_part(part, data.get(part))
    experiment = structure(data, ExperimentConfig)
    parsed = unstructure(experiment)
    system_cls = import_target(method)
    try:
        data_cls = get_registry().load("data", experiment.data_type)
    except PluginError as exc:
        raise ConfigError(f"data_type: {exc}") from None
    parsed["system"] = validate_tree(system_cls.Config, experiment.system, "system", system_cls)
    parsed["data"] = validate_tree(data_cls.Config, experiment.data, "data", data_cls)
    experiment = structure(parsed, ExperimentConfig)
    if not missing:
        check_prompts(parsed, method.spec)
    return ResolvedConfig(raw=raw, parsed=parsed, experiment=experiment, method=method)


def load_experiment(
    source: str, overrides: list[str], prompt: str | None = None, model: str | None = None
) -> ResolvedConfig:
    """Compose and resolve in one go (what ``studio run`` does for a single-stage method)."""
    return resolve(compose_raw(source, overrides, prompt, model))
