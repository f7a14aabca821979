"""Typed registrations: what a plugin tells studio about each name it registers.

Every hook in :mod:`studio.hookspecs` hands its implementation a ``register`` callback; each call
builds one of the attrs specs below (the hook's kind decides which). Specs hold import paths and
plain values only, so discovering plugins imports nothing heavy. Everything core needs to know
about a plugin's component (a method's prompt key and model keys, a guidance's model-family
suffix, a model's prompt check) is a field here, never a name written into core.

``register`` accepts a spec instance or the spec's fields as arguments::

    register("implicit-volume", "pkg.geometry:ImplicitVolume")            # name, target
    register("my-method", system="pkg.system:MySystem", preset="pkg:presets/my.yaml", ...)
    register(MethodSpec(name="my-method", system=..., preset=...))

A keyword the kind's spec does not have is refused with the plugin's name and the valid fields.
"""

from __future__ import annotations

import re
from typing import Optional

import attrs

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_PRESET = re.compile(r"^[A-Za-z_][\w.]*:.+\.ya?ml$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.+-]*$")


def _check_name(_instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{attribute.name} must be a name of letters, digits and '-_.+' (got {value!r})"
        )


def _check_target(_instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _TARGET.match(value):
        raise ValueError(
            f"{attribute.name} must be a 'package.module:Attribute' path, got {value!r}"
        )


def _check_preset(_instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _PRESET.match(value):
        raise ValueError(
            f"{attribute.name} must be 'package:relative/path.yaml' (package data), got {value!r}"
        )


def _check_dotted(_instance: object, attribute: attrs.Attribute, value: object) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for item in values:
        if item is None:
            continue
        if not isinstance(item, str) or not re.fullmatch(
            r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", item
        ):
            raise ValueError(f"{attribute.name} must hold dotted config keys, got {item!r}")


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """A component class (geometry, material, background, renderer, prompt processor, exporter,
    data module) or callable (evaluator) built by name from a config."""

    #: The name configs use (``geometry_type: implicit-volume``); global per kind.
    name: str = attrs.field(validator=_check_name)
    #: ``"package.module:Attribute"`` of the class or callable; imported when a run needs it.
    target: str = attrs.field(validator=_check_target)
    #: One line for ``studio plugins list`` (optional).
    description: str = ""


@attrs.frozen(kw_only=True)
class GuidanceSpec(ComponentSpec):
    """A guidance class. ``model_suffix`` is the suffix of the model-family variant it loads:
    ``studio run METHOD model=NAME`` picks the registered model ``NAME + model_suffix``."""

    model_suffix: Optional[str] = None


@attrs.frozen(kw_only=True)
class ModelSpec(ComponentSpec):
    """An embedded model: ``target`` is a zero-argument callable returning its local folder.

    ``prompt_check`` (``"module:function"``, optional) is called as
    ``function(prompt, negative_prompt)`` and raises ``ConfigError`` for a prompt the model cannot
    follow (a model with a small vocabulary); it may return the model's canonical form of the
    prompt (a string, e.g. its training caption for ``"A Red Cube."``), which prompt processors
    encode instead (``studio.api.canonical_prompt``), or None."""

    prompt_check: Optional[str] = attrs.field(default=None, validator=_check_target)


@attrs.frozen(kw_only=True)
class StageSpec:
    """One stage of a pipeline: a registered single-stage ``method`` run under ``name``.

    ``takes`` is the stage's config key set to the previous stage's run directory (threestudio's
    ``system.geometry_convert_from``; ``system.weights`` for a stage that loads weights); None
    for a stage that takes nothing from the one before."""

    name: str = attrs.field(validator=_check_name)
    method: str = attrs.field(validator=_check_name)
    takes: Optional[str] = attrs.field(default=None, validator=_check_dotted)


def _stages(value: object) -> tuple[StageSpec, ...]:
    """Stages given as specs or as mappings of their fields."""
    if value is None:
        return ()
    items = []
    for item in value:  # type: ignore[union-attr]
        items.append(item if isinstance(item, StageSpec) else StageSpec(**item))
    return tuple(items)


#: Shorthands core handles itself (``studio run`` options); a method cannot take them over.
RESERVED_SHORTHANDS = ("prompt", "model")


def _shorthand_pairs(value: object) -> tuple[tuple[str, str], ...]:
    """Shorthands given as a mapping (or pairs), kept as sorted ``(name, dotted key)`` pairs."""
    return tuple(sorted(dict(value or {}).items()))  # type: ignore[call-overload]


def _check_shorthands(_instance: object, attribute: attrs.Attribute, value: object) -> None:
    for name, key in value:  # type: ignore[attr-defined]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"{attribute.name}: a shorthand is one plain name, got {name!r}")
        if name in RESERVED_SHORTHANDS:
            raise ValueError(f"{attribute.name}: {name!r} is core's own shorthand")
        _check_dotted(_instance, attribute, key)


def _dotted_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)  # type: ignore[arg-type]


@attrs.frozen(kw_only=True)
class MethodSpec:
    """What ``studio run NAME`` runs: one system with its preset, or a pipeline of stages.

    A single-stage method names its ``system`` class and its ``preset`` (package data holding the
    full experiment config). A pipeline names ``stages`` (each a registered single-stage method)
    and no system. The keys tell core where the method keeps what the CLI's shorthands set and
    what ``studio eval`` reads; a method without a prompt leaves ``prompt_key`` None.
    """

    name: str = attrs.field(validator=_check_name)
    #: ``"module:Class"`` of the system (a ``studio.api.BaseSystem``); None for a pipeline.
    system: Optional[str] = attrs.field(default=None, validator=_check_target)
    #: ``"package:relative/path.yaml"`` of the preset.
    preset: Optional[str] = attrs.field(default=None, validator=_check_preset)
    #: One line for ``studio methods``.
    description: str = ""
    #: Dotted key ``prompt=...`` / ``--prompt`` sets, and the prompt ``studio eval`` scores.
    prompt_key: Optional[str] = attrs.field(default=None, validator=_check_dotted)
    #: Dotted key of the negative prompt (checked with the prompt by embedded models).
    negative_prompt_key: Optional[str] = attrs.field(default=None, validator=_check_dotted)
    #: Dotted keys ``model=NAME`` sets (those present in the config).
    model_keys: tuple[str, ...] = attrs.field(
        default=(), converter=_dotted_tuple, validator=_check_dotted
    )
    #: Dotted key naming the guidance type, which picks ``model=NAME``'s variant (its
    #: ``GuidanceSpec.model_suffix``); None when the method has no guidance.
    guidance_type_key: Optional[str] = attrs.field(default=None, validator=_check_dotted)
    #: The method's own ``NAME=value`` shorthands for ``studio run``, as ``{name: dotted key}``
    #: (``{"guide_shape": "system.guide_shape"}``); kept as sorted pairs. In a pipeline each
    #: stage's method's shorthands set that stage's key.
    shorthands: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_shorthand_pairs, validator=_check_shorthands
    )
    #: The stages of a pipeline, in order.
    stages: tuple[StageSpec, ...] = attrs.field(default=(), converter=_stages)

    @property
    def is_pipeline(self) -> bool:
        return bool(self.stages)

    @property
    def target(self) -> str:
        """The system's import path (pipelines have none: ``""``)."""
        return self.system or ""

    def __attrs_post_init__(self) -> None:
        if self.stages:
            if self.system or self.preset:
                raise ValueError("a pipeline (stages=...) takes no system or preset of its own")
            names = [s.name for s in self.stages]
            if len(set(names)) != len(names):
                raise ValueError(f"stage names must differ, got {names}")
        elif not self.system:
            raise ValueError(
                "a method needs system='module:Class' (or stages=[...] for a pipeline)"
            )
