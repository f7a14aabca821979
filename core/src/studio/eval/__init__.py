"""``studio eval RUN_DIR``: score a run's test frames with every registered evaluator.

The frames are the PNGs of the run's latest test orbit, ``save/it<step>-test/<index>.png``
(written by ``studio test`` and at the end of ``studio run``). When the run's latest checkpoint
(its newest one under ``ckpts/``) has no test frames yet, :func:`evaluate_run` first renders them through the
very code path of ``studio test`` (:func:`studio.runner.start`, in this process, no guidance
model); ``render=False`` never renders, ``render=True`` always re-renders. Each is a grid of equally wide
columns, rgb first (lift-3D systems write rgb | normal | opacity); evaluators see the rgb column
only. A column is ``data.eval_width`` pixels wide when the run's config says so and the grid width
is a multiple of it, else as wide as the grid is high (square views).

Evaluators are registered with the ``studio_register_evaluators`` hook (kind ``"evaluator"``); each
is a callable ``evaluate(EvalContext) -> dict`` of JSON-ready metrics. The results, keyed by
evaluator name, are written to ``save/eval.json`` atomically.

A run of several particles (``system.num_particles`` K > 1) keeps each particle's frames under
``save/particle-<k>/it<step>-test/``: every evaluator runs on each particle, and ``eval.json``
holds their mean under ``evaluators`` (what tools read for a run), the standard deviation,
minimum and maximum under ``spread`` and each particle's own results under ``particles``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from studio.errors import RunDirError, StudioError
from studio.rundir import RunDir, open_run

EVAL_FILE = "eval.json"
_TEST_DIR = re.compile(r"^it(\d+)-test$")


@dataclass(frozen=True)
class EvalContext:
    """What an evaluator sees: the run, its parsed config, its prompt and its test frames' rgb
    columns. ``prompt`` is read at the prompt key the run's method registered (None when the
    method has no prompt or is not installed)."""

    run_dir: Path
    config: dict[str, Any]
    step: int
    frames: list[np.ndarray] = field(repr=False)
    prompt: Optional[str] = None
    test_dir: Optional[Path] = None
    """The folder the frames came from (``save/[particle-<k>/]it<step>-test``)."""
    particle: int = 0
    """Which particle the frames show (0 for a one-particle run)."""


def run_prompt(config: dict[str, Any]) -> Optional[str]:
    """The prompt of a run's parsed ``config``, at its method's registered ``prompt_key``."""
    from studio.config.loading import get_dotted
    from studio.errors import PluginError
    from studio.registry import get_registry

    try:
        key = get_registry().get("method", str(config.get("method"))).spec.prompt_key
    except PluginError:
        return None
    if not key:
        return None
    try:
        prompt = get_dotted(config, key)
    except KeyError:
        return None
    return prompt if isinstance(prompt, str) else None


def latest_test_dir(run: RunDir, save: Optional[Path] = None) -> tuple[int, Path]:
    """``(step, folder)`` of the highest-step ``<save>/it<step>-test/`` holding PNGs (``save``:
    the run's ``save/`` or a particle's folder in it)."""
    save = run.save if save is None else save
    found = []
    if save.is_dir():
        for folder in save.iterdir():
            match = _TEST_DIR.match(folder.name)
            if match and folder.is_dir() and any(folder.glob("*.png")):
                found.append((int(match.group(1)), folder))
    if not found:
        where = save.relative_to(run.root) if save.is_relative_to(run.root) else save
        raise RunDirError(
            f"{run.root} has no test frames ({where}/it<step>-test/*.png). Render them with "
            f"`studio test {run.root}` and run `studio eval` again."
        )
    return max(found)


def checkpoint_step(run: RunDir) -> Optional[int]:
    """``global_step`` of the run's newest checkpoint, or None when the run has none."""
    path = run.newest_checkpoint()
    if path is None:
        return None
    from studio.training.checkpoint import load_checkpoint

    return int(load_checkpoint(path)["global_step"])


def _has_frames(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.png"))


def ensure_test_frames(run: RunDir, render: Optional[bool] = None) -> None:
    """Render the test orbit of ``run``'s last checkpoint when asked or when it has no frames.

    ``render``: None renders only when ``save/it<checkpoint step>-test/`` holds no PNG; True always
    renders; False never does (a run without frames then fails in :func:`latest_test_dir`). The
    rendering is what ``studio test RUN_DIR`` does (:func:`studio.runner.start`, stage ``"test"``,
    one process), so no guidance model is loaded. A run without a checkpoint is left as it is if
    it has frames of some step, else :class:`RunDirError`.
    """
    if render is False:
        return
    step = checkpoint_step(run)
    if step is None:
        saves = run.particle_saves()
        if render or not all(any(_has_frames(f) for f in s.glob("it*-test")) for s in saves):
            raise RunDirError(
                f"{run.root} has no test frames (save/it<step>-test/*.png) and no checkpoint "
                f"(under ckpts/) to render them from. Train it first (`studio run` or "
                f"`studio resume {run.root}`), then run `studio eval` again."
            )
        return
    if render is None and all(
        _has_frames(save / f"it{step}-test") for save in run.particle_saves()
    ):
        return
    from studio.runner import start

    print(
        f"Rendering the test orbit of checkpoint step {step} into save/it{step}-test/ "
        f"(as `studio test {run.root}` does).",
        file=sys.stderr,
        flush=True,
    )
    start(run, "test", False, None, None)


def rgb_column(grid: np.ndarray, column_width: Optional[int] = None) -> np.ndarray:
    """The leftmost column of a frame grid ``[H, W, C]`` as ``uint8 [H, w, 3]`` (see module doc)."""
    if grid.ndim == 2:
        grid = np.repeat(grid[..., None], 3, axis=-1)
    height, width = grid.shape[:2]
    if not column_width or width % column_width != 0:
        column_width = height if width % height == 0 else width
    return np.ascontiguousarray(grid[:, :column_width, :3])


def load_test_frames(run: RunDir, save: Optional[Path] = None) -> tuple[int, list[np.ndarray]]:
    """``(step, rgb columns in index order)`` of the latest test orbit under ``save`` (the run's
    ``save/`` or a particle's folder)."""
    step, folder = latest_test_dir(run, save)
    return step, read_frames(folder, run.load_parsed())


def read_frames(folder: Path, config: dict[str, Any]) -> list[np.ndarray]:
    """The rgb columns of the frame grids ``folder/<index>.png``, in index order."""
    import imageio.v3 as iio

    column_width = (config.get("data") or {}).get("eval_width")
    paths = sorted(folder.glob("*.png"), key=lambda p: (len(p.stem), p.stem))
    return [rgb_column(np.asarray(iio.imread(p)), column_width) for p in paths]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evaluate_run(
    run_dir: str | Path,
    names: Optional[Sequence[str]] = None,
    render: Optional[bool] = None,
    stage: Optional[str] = None,
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Run the evaluators ``names`` (default: every registered one) on ``run_dir`` (a pipeline's:
    its last finished stage, or ``stage``).

    The test orbit is rendered first as :func:`ensure_test_frames` decides from ``render``
    (default: only when the last checkpoint has no test frames).
    Returns ``(path of save/eval.json, {evaluator name: metrics})``. An evaluator raising a
    :class:`StudioError` is reported as ``{"error": message}`` so the others still run; any other
    exception is a bug and propagates. No registered evaluator is a :class:`StudioError`.
    """
    from studio.registry import get_registry

    run = open_run(run_dir, stage)
    registry = get_registry()
    selected = list(names) if names else registry.names("evaluator")
    if not selected:
        raise StudioError(
            "No evaluator is registered. Evaluators come from method plugins (for example "
            "studio-primitives registers 'primitives-r-precision'); install one and check "
            "`studio plugins list`."
        )
    evaluators = {name: registry.load("evaluator", name) for name in selected}
    ensure_test_frames(run, render)
    config = run.load_parsed()
    prompt = run_prompt(config)
    per_particle = []
    for index, save in enumerate(run.particle_saves()):
        step, folder = latest_test_dir(run, save)
        frames = read_frames(folder, config)
        context = EvalContext(run.root, config, step, frames, prompt, folder, index)
        per_particle.append((step, len(frames), run_evaluators(evaluators, context)))
    step, count, results = per_particle[0]
    steps = sorted({s for s, _, _ in per_particle})
    if len(steps) > 1:
        raise RunDirError(
            f"{run.root}: the particles' latest test orbits are of different steps "
            f"({', '.join(map(str, steps))}). Render them again with `studio test {run.root}` "
            "(or `studio eval --render`)."
        )
    record: dict[str, Any] = {"step": step, "frames": count, "evaluators": results}
    if len(per_particle) > 1:
        found = [r for _, _, r in per_particle]
        results = particle_mean(list(evaluators), found)
        record["evaluators"] = results
        record["spread"] = particle_spread(list(evaluators), found)
        record["particles"] = [
            {"step": s, "frames": n, "evaluators": r} for s, n, r in per_particle
        ]
    out = run.save / EVAL_FILE
    write_json_atomic(out, record)
    return out, results


def run_evaluators(evaluators: dict[str, Any], context: EvalContext) -> dict[str, dict[str, Any]]:
    """``{name: metrics}`` of every evaluator on ``context``; a :class:`StudioError` becomes
    ``{"error": message}`` so the others still run."""
    results: dict[str, dict[str, Any]] = {}
    for name, evaluate in evaluators.items():
        try:
            results[name] = dict(evaluate(context))
        except StudioError as exc:
            results[name] = {"error": str(exc)}
    return results


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric_metrics(names: list[str], found: list[dict[str, dict[str, Any]]]):
    """``(evaluator, metric, values over particles)`` for every metric that is a number in
    every particle's results."""
    for name in names:
        for key in found[0].get(name, {}):
            values = [r.get(name, {}).get(key) for r in found]
            if all(_is_number(v) for v in values):
                yield name, key, [float(v) for v in values]


def particle_mean(
    names: list[str], found: list[dict[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Each evaluator's numeric metrics averaged over the particles, its other entries kept where
    every particle has the same value (``applicable``, a shape name); an evaluator that failed on
    a particle keeps that particle's error instead."""
    mean: dict[str, dict[str, Any]] = {}
    for name in names:
        errors = [r[name]["error"] for r in found if "error" in r.get(name, {})]
        if errors:
            mean[name] = {"error": errors[0]}
            continue
        first = found[0].get(name, {})
        mean[name] = {
            key: value
            for key, value in first.items()
            if all(r.get(name, {}).get(key) == value for r in found)
        }
    for name, key, values in _numeric_metrics(names, found):
        if "error" not in mean[name] and len(set(values)) > 1:  # equal ones keep their type
            mean[name][key] = float(np.mean(values))
    return mean


def particle_spread(
    names: list[str], found: list[dict[str, dict[str, Any]]]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per evaluator and numeric metric: the standard deviation (population), minimum and
    maximum over the particles."""
    spread: dict[str, dict[str, dict[str, float]]] = {}
    for name, key, values in _numeric_metrics(names, found):
        spread.setdefault(name, {})[key] = {
            "std": float(np.std(values)),
            "min": min(values),
            "max": max(values),
        }
    return spread


def format_results(
    results: dict[str, dict[str, Any]], spread: Optional[dict[str, Any]] = None
) -> list[str]:
    """One line per metric, ``name: key = value`` (floats with 4 decimals), with the spread
    over particles after it where ``spread`` has the metric."""
    lines = []
    for name, metrics in results.items():
        for key, value in metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            over = (spread or {}).get(name, {}).get(key)
            if over:
                shown += f" (std {over['std']:.4f}, min {over['min']:.4f}, max {over['max']:.4f})"
            lines.append(f"{name}: {key} = {shown}")
    return lines


def format_record(record: dict[str, Any]) -> list[str]:
    """The lines ``studio eval`` prints for an ``eval.json`` record: the metrics, or for several
    particles each particle's metrics, then their mean with the spread."""
    particles = record.get("particles") or []
    if not particles:
        return format_results(record["evaluators"])
    lines = []
    for index, found in enumerate(particles):
        lines += [f"particle {index}: {line}" for line in format_results(found["evaluators"])]
    mean = format_results(record["evaluators"], record.get("spread"))
    return lines + [f"mean over {len(particles)} particles: {line}" for line in mean]
