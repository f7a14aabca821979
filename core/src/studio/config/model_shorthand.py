"""``studio run METHOD model=NAME``: one name for the pretrained model of guidance and prompts.

The shorthand sets :data:`MODEL_KEYS` (those present in the composed config) to the model that
fits ``system.guidance_type``: a plugin shipping a model family ``NAME`` registers one variant per
guidance (``NAME-sd``, ``NAME-if``; see :data:`GUIDANCE_MODEL_SUFFIXES`), and the variant
registered for the config's guidance is chosen. Otherwise ``NAME`` is passed through unchanged (a
registered name, a folder path or a hub id, resolved later by
:func:`studio.models.hub.resolve_model`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Optional

from studio.config.loading import get_dotted, resolve_references
from studio.errors import ConfigError

#: The config keys ``model=NAME`` sets (each only when the composed config has it).
MODEL_KEYS = (
    "system.prompt_processor.pretrained_model_name_or_path",
    "system.guidance.pretrained_model_name_or_path",
)
GUIDANCE_TYPE_KEY = "system.guidance_type"

#: ``system.guidance_type`` -> suffix of the registered model variant that guidance loads.
GUIDANCE_MODEL_SUFFIXES: dict[str, str] = {
    "stable-diffusion": "-sd",
    "deep-floyd": "-if",
}


def model_suffix(guidance_type: Optional[str]) -> Optional[str]:
    """The model-name suffix for a guidance type (``"deep-floyd"`` -> ``"-if"``); None if none."""
    if guidance_type is None:
        return None
    return GUIDANCE_MODEL_SUFFIXES.get(guidance_type)


def model_for_guidance(name: str, guidance_type: Optional[str], registered: Collection[str]) -> str:
    """The model name ``model=NAME`` stands for under ``guidance_type``.

    ``NAME + suffix`` when that variant is registered; else ``NAME`` itself (registered, a folder
    path or a hub id: passed through). Raises :class:`ConfigError` when the guidance has a suffix,
    neither ``NAME`` nor ``NAME + suffix`` is registered, but the variant for *another* guidance
    is (``model=x`` with deep-floyd guidance when only ``x-sd`` exists): passing ``x`` on to the
    hub would only fail later and less clearly.
    """
    suffix = model_suffix(guidance_type)
    if suffix is not None and name + suffix in registered:
        return name + suffix
    if suffix is None or name in registered:
        return name
    others = [
        f"{name}{other} (for guidance {kind})"
        for kind, other in GUIDANCE_MODEL_SUFFIXES.items()
        if other != suffix and name + other in registered
    ]
    if others:
        raise ConfigError(
            f"model={name}: the config's guidance is {guidance_type!r}, which needs the model "
            f"'{name}{suffix}', but only {', '.join(others)} is registered. Switch the guidance "
            "(system.guidance_type=... and system.prompt_processor_type=..., or a method preset "
            f"using that guidance), or give a model for {guidance_type!r} (a registered name, a "
            f"folder or a hub id); to pass {name!r} through as it is, set {' and '.join(MODEL_KEYS)} "
            "directly."
        )
    return name


def _guidance_type(raw: dict[str, Any]) -> Optional[str]:
    try:
        value = get_dotted(resolve_references(raw), GUIDANCE_TYPE_KEY)
    except (KeyError, ConfigError):
        return None
    return value if isinstance(value, str) else None


def model_overrides(raw: dict[str, Any], name: str, registered: Collection[str]) -> dict[str, str]:
    """The dotted overrides (key -> model name) ``model=NAME`` adds to the composed ``raw``.

    Raises :class:`ConfigError` when ``raw`` has none of :data:`MODEL_KEYS` (the method's guidance
    loads no pretrained model) or when the name cannot fit the guidance (see
    :func:`model_for_guidance`).
    """
    keys = [key for key in MODEL_KEYS if _has(raw, key)]
    if not keys:
        raise ConfigError(
            f"model={name}: method {raw.get('method')!r} has neither "
            f"{' nor '.join(MODEL_KEYS)} in its config, so there is no pretrained model to set. "
            "The model shorthand (model=NAME or --model NAME) needs a guidance with a pretrained "
            "model, such as dreamfusion-sd or dreamfusion-if; drop it, or set the key your "
            "method uses directly as dotted.key=value."
        )
    model = model_for_guidance(name, _guidance_type(raw), registered)
    return {key: model for key in keys}


def _has(raw: dict[str, Any], key: str) -> bool:
    try:
        get_dotted(raw, key)
    except KeyError:
        return False
    return True
