"""Per-method time table: minutes of training at each method's default step counts, from the
per-step times the method benches measured, next to threestudio's published times.

Each stage's step count comes from its preset (``trainer.max_steps``; Fantasia3D's geometry stage
split at ``system.latent_steps``, ProlificDreamer's first stage at its
``data.resolution_milestones``); each phase's ms per step is a measurement of a bench in
``bench/`` (SD-2.1-base- or IF-I-XL-sized random weights, a sample of steps past the warm-ups,
median), listed in :data:`MEASURED` with its device, date and command. Validation and test
renders are not counted. ``python bench/method_times.py`` prints the markdown table (no GPU
needed: it computes, it does not measure; re-run the benches to refresh :data:`MEASURED`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

#: A method's stages in order (single-stage methods have one).
METHODS: dict[str, tuple[str, ...]] = {
    "DreamFusion-SD (`dreamfusion-sd`)": ("dreamfusion-sd",),
    "DreamFusion-IF (`dreamfusion-if`)": ("dreamfusion-if",),
    "Magic3D (`magic3d-sd`)": ("magic3d-coarse-sd", "magic3d-refine-sd"),
    "Magic3D-IF (`magic3d-if`)": ("magic3d-coarse-if", "magic3d-refine-sd"),
    "SJC (`sjc`)": ("sjc",),
    "Latent-NeRF (`latentnerf-full`)": ("latentnerf", "latentnerf-refine"),
    "Sketch-Shape (`sketchshape-full`)": ("sketchshape", "sketchshape-refine"),
    "Fantasia3D (`fantasia3d-full`)": ("fantasia3d", "fantasia3d-texture"),
    "ProlificDreamer (`prolificdreamer-full`)": (
        "prolificdreamer",
        "prolificdreamer-geometry",
        "prolificdreamer-texture",
    ),
}

#: threestudio's published minutes (T3Bench, A100), by method name's first word(s).
THREESTUDIO_MINUTES = {
    "DreamFusion-SD": 30.0,
    "Magic3D (": 40.0,
    "SJC": 25.0,
    "Latent-NeRF": 65.0,
    "Fantasia3D": 45.0,
    "ProlificDreamer": 240.0,
}


@dataclass(frozen=True)
class Measured:
    """One phase's eager ms per step and where it was measured."""

    ms: float
    source: str


H100_1206 = "H100 2026-12-06"
H100_1207 = "H100 2026-12-07"
#: (stage preset, phase) -> measured step; phase ``all`` unless a stage has two.
MEASURED: dict[tuple[str, str], Measured] = {
    ("dreamfusion-sd", "all"): Measured(57.7, f"{H100_1207}, bench/prolificdreamer.py --quick"),
    ("dreamfusion-if", "all"): Measured(
        63.7, "H200 2026-12-04, bench/dreamfusion.py --guidance if"
    ),
    ("magic3d-coarse-sd", "all"): Measured(61.2, f"{H100_1206}, bench/magic3d.py"),
    ("magic3d-coarse-if", "all"): Measured(63.7, "H200 2026-12-04, dreamfusion-if's step"),
    ("magic3d-refine-sd", "all"): Measured(78.9, f"{H100_1206}, bench/magic3d.py"),
    ("sjc", "all"): Measured(47.5, f"{H100_1206}, bench/sjc.py"),
    ("latentnerf", "all"): Measured(38.2, f"{H100_1206}, bench/latentnerf.py --quick"),
    ("latentnerf-refine", "all"): Measured(63.6, f"{H100_1206}, bench/latentnerf.py --quick"),
    ("sketchshape", "all"): Measured(43.6, f"{H100_1206}, bench/latentnerf.py --quick"),
    ("sketchshape-refine", "all"): Measured(63.6, "latentnerf-refine's step (the same stage)"),
    ("fantasia3d", "latent"): Measured(40.8, f"{H100_1207}, bench/fantasia3d.py --quick"),
    ("fantasia3d", "rest"): Measured(78.7, f"{H100_1207}, bench/fantasia3d.py --quick"),
    ("fantasia3d-texture", "all"): Measured(95.0, f"{H100_1207}, bench/fantasia3d.py --quick"),
    ("prolificdreamer", "before"): Measured(254.1, f"{H100_1207}, bench/prolificdreamer.py"),
    ("prolificdreamer", "rest"): Measured(537.9, f"{H100_1207}, bench/prolificdreamer.py"),
    ("prolificdreamer-geometry", "all"): Measured(61.3, f"{H100_1207}, bench/prolificdreamer.py"),
    ("prolificdreamer-texture", "all"): Measured(233.0, f"{H100_1207}, bench/prolificdreamer.py"),
}


#: (stage preset, phase) -> the step captured as CUDA graphs (``trainer.cuda_graphs``, with
#: ``system.renderer.fixed_capacity=true``), for the stages whose step is captured; the others
#: run eagerly, so their captured time is their eager time.
CAPTURED: dict[tuple[str, str], Measured] = {}


def stage_config(preset: str) -> dict[str, Any]:
    """The preset's merged config, unresolved (a later stage's required inputs stay unset)."""
    from studio.config.resolve import compose_raw

    return compose_raw(preset, [], prompt="a bench")


def phases(preset: str, config: dict[str, Any]) -> dict[str, int]:
    """Steps per phase of one stage: ``{"all": max_steps}``, or Fantasia3D's geometry stage
    split at ``latent_steps`` (``latent`` / ``rest``) and a stage whose render grows at
    ``data.resolution_milestones`` split at the first milestone (``before`` / ``rest``)."""
    total = int(config["trainer"]["max_steps"])
    latent = int(config.get("system", {}).get("latent_steps") or 0)
    milestones = config.get("data", {}).get("resolution_milestones") or []
    if latent and (preset, "latent") in MEASURED:
        first = min(latent, total)
        return {"latent": first, "rest": total - first}
    if milestones and (preset, "before") in MEASURED:
        first = min(int(milestones[0]), total)
        return {"before": first, "rest": total - first}
    return {"all": total}


def method_minutes(
    stages: tuple[str, ...], configs: dict[str, dict[str, Any]], captured: bool = False
) -> float:
    """Minutes of training steps of a method's stages at their default step counts: eager, or
    with each captured stage's captured step (``captured``)."""
    total_ms = 0.0
    for preset in stages:
        for phase, steps in phases(preset, configs[preset]).items():
            key = (preset, phase)
            step = CAPTURED.get(key, MEASURED[key]) if captured else MEASURED[key]
            total_ms += steps * step.ms
    return total_ms / 60000.0


def published(method: str) -> float | None:
    return next((m for key, m in THREESTUDIO_MINUTES.items() if method.startswith(key)), None)


def table(configs: dict[str, dict[str, Any]]) -> str:
    """The markdown table: method, steps per stage, minutes, threestudio's, the ratio."""
    lines = [
        "| method | steps per stage | minutes (eager) | minutes (captured) "
        "| threestudio (T3Bench, A100) | speed-up (eager / captured) | 5x? |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, stages in METHODS.items():
        steps = " + ".join(str(int(configs[p]["trainer"]["max_steps"])) for p in stages)
        eager = method_minutes(stages, configs)
        captured = method_minutes(stages, configs, captured=True)
        theirs = published(method)
        ratio = f"{theirs / eager:.1f}x / {theirs / captured:.1f}x" if theirs else "-"
        five = ("yes" if theirs / min(eager, captured) >= 5.0 else "no") if theirs else "-"
        reference = f"{theirs:.0f} min" if theirs else "not published"
        lines.append(
            f"| {method} | {steps} | {eager:.1f} | {captured:.1f} | {reference} | {ratio} "
            f"| {five} |"
        )
    return "\n".join(lines)


def main() -> int:
    presets = sorted({p for stages in METHODS.values() for p in stages})
    configs = {p: stage_config(p) for p in presets}
    print(table(configs))
    print("\nms per step (eager, batch 1) and where each was measured:")
    for (preset, phase), measured in MEASURED.items():
        print(f"* {preset} ({phase}): {measured.ms:.1f} ms, {measured.source}")
    print("\nms per step (captured as CUDA graphs, batch 1) and where each was measured:")
    for (preset, phase), measured in CAPTURED.items():
        print(f"* {preset} ({phase}): {measured.ms:.1f} ms, {measured.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
