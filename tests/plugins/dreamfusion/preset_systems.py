"""A preset's system built without its diffusion model, for tests of its training step's parts."""

from __future__ import annotations

from typing import Any

from studio.config.resolve import load_experiment


def preset_system(preset: str, system_class: type, overrides: list[str] = (), **renderer: Any):
    """``system_class`` configured as ``preset``'s ``system`` (with ``overrides``), its guidance
    and prompt processor left out and ``renderer`` merged into its renderer config."""
    experiment = load_experiment(preset, list(overrides), prompt="a bench").experiment
    cfg = dict(experiment.system)
    for key in ("prompt_processor", "guidance"):
        cfg.pop(key)
        cfg[f"{key}_type"] = ""
    cfg["renderer"] = {**cfg["renderer"], **renderer}
    return system_class(cfg)
