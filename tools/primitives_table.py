"""A method on every shape x colour prompt of the primitives models: R-precision and wall time.

usage: python tools/primitives_table.py OUT [--presets P ...] [--prompts "a red cube" ...]
       [--jobs N] [--studio PATH] [--set KEY=VALUE ...] [--also-eval EVALUATOR ...]
       python tools/primitives_table.py OUT --summarize [--classifier WEIGHTS]

For every (preset, prompt) pair, in parallel over ``--jobs`` worker processes: ``studio run PRESET
prompt=...`` (training and the test orbit), then ``studio eval RUN -e primitives-r-precision``.
Each finished run appends one JSON line to ``OUT/results.jsonl`` at once (a run cut short by a
time limit keeps what finished); a pipeline's every stage is scored (``--stage``), its last stage
is the result. The tool keeps the RGB column of every test frame, as the evaluator
saw it, in ``OUT/test-frames/PRESET/PROMPT/``. At the end, and
with ``--summarize`` from an existing ``results.jsonl``, writes ``OUT/table.md`` (per preset: a
shape x colour grid of R-precision, the mean, wall times) and ``OUT/frames-PRESET.png`` (one test
frame per prompt, shapes as rows, colours as columns). ``--summarize --classifier WEIGHTS`` scores
the kept test frames again with other classifier weights and writes ``OUT/table-WEIGHTS_STEM.md``
(how a classifier change moves the table, without training anything again).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from studio_primitives.colors import COLORS
from studio_primitives.shapes import SHAPES

PRESETS = ("dreamfusion-primitives", "dreamfusion-primitives-if")
EVALUATOR = "primitives-r-precision"


def all_prompts() -> list[str]:
    """``"a {colour} {shape}"`` for every pair, shapes outer."""
    return [f"a {color} {shape}" for shape in SHAPES for color in COLORS]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def log_tail(log: Path, lines: int = 6) -> str:
    """The last ``lines`` non-empty lines of a run's log, joined: a failure's reason stays in
    ``results.jsonl`` even when the machine that wrote the log is gone."""
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return " | ".join([line.strip() for line in text if line.strip()][-lines:]) + f" ({log})"


def prompt_overrides(prompt: str, templates: Sequence[str]) -> list[str]:
    """``templates`` with ``{shape}`` and ``{color}`` replaced by the prompt's (``"a red cube"``):
    ``guide_shape={shape}`` gives every run its prompt's shape as Sketch-Shape's guide."""
    color, shape = prompt.split()[-2:]
    return [t.replace("{shape}", shape).replace("{color}", color) for t in templates]


def run_one(
    studio: str,
    preset: str,
    prompt: str,
    out: Path,
    overrides: Sequence[str],
    extra_evaluators: Sequence[str] = (),
    threads: int | None = None,
) -> dict[str, Any]:
    """Train, test and evaluate one prompt; returns its result record (``error`` on failure).
    ``extra_evaluators`` score the last stage too; their metrics go to ``record["extra"]``.
    ``threads`` caps each child's CPU threads (``OMP_NUM_THREADS``): 16 jobs each starting
    torch's default of one thread per core oversubscribe the machine 16 times."""
    env = None if threads is None else {**os.environ, **thread_limits(threads)}
    overrides = prompt_overrides(prompt, overrides)
    root = out / "runs" / preset / slug(prompt)
    shutil.rmtree(root, ignore_errors=True)
    log = out / "logs" / f"{preset}--{slug(prompt)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"preset": preset, "prompt": prompt, "overrides": list(overrides)}
    command = [
        studio,
        "run",
        preset,
        f"prompt={prompt}",
        f"exp_root_dir={root}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    with open(log, "w", encoding="utf-8") as sink:
        started = time.perf_counter()
        code = subprocess.call(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        record["run_s"] = round(time.perf_counter() - started, 1)
        if code != 0:
            return {**record, "error": f"studio run exited {code}: {log_tail(log)}"}
        (run_dir,) = (root / preset).iterdir()
        # a pipeline: every stage is scored (its own run directory under stages/), the last one
        # is the result; a single-stage method: the run itself
        stages = sorted((run_dir / "stages").iterdir()) if (run_dir / "stages").is_dir() else []
        targets = [(d.name.split("-", 1)[1], d) for d in stages] or [(None, run_dir)]
        started = time.perf_counter()
        for stage, folder in targets:
            command = [studio, "eval", str(run_dir), "-e", EVALUATOR]
            if folder == targets[-1][1]:
                command += [arg for name in extra_evaluators for arg in ("-e", name)]
            code = subprocess.call(
                command + (["--stage", stage] if stage else []),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
            )
            if code != 0:
                return {**record, "error": f"studio eval exited {code}: {log_tail(log)}"}
            if stage is not None:
                record.setdefault("stages", {})[stage] = stage_metrics(folder)
        record["eval_s"] = round(time.perf_counter() - started, 1)
    record.update(stage_metrics(targets[-1][1]))
    if extra_evaluators:
        evaluated = json.loads((targets[-1][1] / "save" / "eval.json").read_text())["evaluators"]
        record["extra"] = {name: evaluated[name] for name in extra_evaluators}
    keep_test_frames(targets[-1][1], frames_folder(out, preset, prompt))
    return record


def thread_limits(threads: int) -> dict[str, str]:
    """Environment variables that cap a child process's CPU thread pools at ``threads``."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def stage_metrics(run_dir: Path) -> dict[str, Any]:
    """R-precision, accuracies and frame count of a run (or stage) directory's ``eval.json``
    (for several particles: their mean, and each particle's R-precision under
    ``particle_r_precision``)."""
    evaluated = json.loads((run_dir / "save" / "eval.json").read_text())
    metrics = evaluated["evaluators"][EVALUATOR]
    keys = ("r_precision", "shape_accuracy", "color_accuracy", "frames")
    found = {k: metrics[k] for k in keys}
    if evaluated.get("particles"):
        found["particle_r_precision"] = [
            p["evaluators"][EVALUATOR]["r_precision"] for p in evaluated["particles"]
        ]
    return found


def frames_folder(out: Path, preset: str, prompt: str) -> Path:
    """Where :func:`keep_test_frames` keeps the test frames of one run of the table."""
    return out / "test-frames" / preset / slug(prompt)


def keep_test_frames(run_dir: Path, folder: Path) -> None:
    """The RGB column of each of the run's latest test frames (what the evaluator classified) as
    ``folder/NNN.png``; a run of several particles keeps particle k's as ``folder/pK-NNN.png``
    (and :func:`rescore` scores them all together)."""
    from studio.eval import load_test_frames
    from studio.rundir import RunDir

    run = RunDir(run_dir)
    saves = run.particle_saves()
    folder.mkdir(parents=True, exist_ok=True)
    for particle, save in enumerate(saves):
        _, frames = load_test_frames(run, save)
        prefix = f"p{particle}-" if len(saves) > 1 else ""
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{prefix}{index:03d}.png")


def rescore(out: Path, classifier: Path) -> list[dict[str, Any]]:
    """The records of ``OUT/results.jsonl`` with R-precision and accuracies recomputed from the
    kept test frames by the classifier weights ``classifier`` (records without frames: as they
    were, marked ``"rescored": False``)."""
    from studio_primitives.classifier import load_classifier
    from studio_primitives.evaluation import prompt_target, r_precision

    model = load_classifier(classifier)
    records = []
    for record in read_results(out):
        paths = sorted(frames_folder(out, record["preset"], record["prompt"]).glob("*.png"))
        target, _ = prompt_target(record["prompt"])
        if "error" in record or not paths or target is None:
            records.append({**record, "rescored": False})
            continue
        frames = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
        metrics = r_precision(frames, *target, model)
        keys = ("r_precision", "shape_accuracy", "color_accuracy", "frames")
        records.append({**record, **{k: metrics[k] for k in keys}, "rescored": True})
    return records


def run_all(args: argparse.Namespace) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(preset, prompt) for prompt in args.prompts for preset in args.presets]
    lock = threading.Lock()
    done = [0]
    started = time.perf_counter()

    def work(job: tuple[str, str]) -> None:
        try:
            record = run_one(args.studio, *job, out, args.set, args.also_eval, args.threads)
        except Exception as exc:  # noqa: BLE001 -- a broken run must not stop the table
            record = {"preset": job[0], "prompt": job[1], "error": repr(exc)}
        with lock:
            done[0] += 1
            with open(out / "results.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            elapsed = time.perf_counter() - started
            print(
                f"[{done[0]}/{len(jobs)} {elapsed:.0f} s] {job[0]} {job[1]!r}: "
                f"R={record.get('r_precision', '-')} run {record.get('run_s', '-')} s"
                + (f" ERROR {record['error']}" if "error" in record else ""),
                flush=True,
            )

    # the first run alone: it JIT-builds nerfacc's CUDA code (~75 s) the others then load
    first = 1 if jobs and args.first_alone else 0
    for job in jobs[:first]:
        work(job)
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(work, jobs[first:]))


def read_results(out: Path) -> list[dict[str, Any]]:
    """The last record of every (preset, prompt) in ``OUT/results.jsonl``."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            latest[(record["preset"], record["prompt"])] = record
    return list(latest.values())


def summarize(out: Path, classifier: Path | None = None) -> str:
    """Write ``OUT/table.md`` and the frame grids (with ``classifier``: ``OUT/table-STEM.md`` from
    :func:`rescore`, no grids); returns the markdown."""
    records = read_results(out) if classifier is None else rescore(out, classifier)
    lines: list[str] = []
    for preset in sorted({r["preset"] for r in records}):
        rows = {r["prompt"]: r for r in records if r["preset"] == preset}
        scored = [r for r in rows.values() if "r_precision" in r]
        failed = [r for r in rows.values() if "error" in r]
        lines += [f"### {preset}", ""]
        lines += ["| shape | " + " | ".join(COLORS) + " |", "|---" * (len(COLORS) + 1) + "|"]
        for shape in SHAPES:
            cells = []
            for color in COLORS:
                record = rows.get(f"a {color} {shape}")
                if record is None:
                    cells.append("")
                elif "error" in record:
                    cells.append("error")
                else:
                    cells.append(f"{record['r_precision']:.2f}")
            lines.append(f"| {shape} | " + " | ".join(cells) + " |")
        lines.append("")
        if scored:
            mean = statistics.fmean(r["r_precision"] for r in scored)
            shape_acc = statistics.fmean(r["shape_accuracy"] for r in scored)
            color_acc = statistics.fmean(r["color_accuracy"] for r in scored)
            times = [r["run_s"] for r in scored]
            lines.append(
                f"{len(scored)} runs: mean R-precision **{mean:.3f}** (shape {shape_acc:.3f}, "
                f"colour {color_acc:.3f}); wall time per run (train + test orbit) median "
                f"{statistics.median(times):.1f} s, min {min(times):.1f} s, max {max(times):.1f} s"
                f"; eval median {statistics.median(r['eval_s'] for r in scored):.1f} s."
            )
            lines += stage_lines(scored)
            lines += extra_lines(scored)
        if failed:
            lines.append(f"{len(failed)} runs failed: " + ", ".join(r["prompt"] for r in failed))
        lines.append("")
        if classifier is None:
            frame_grid(out, preset)
    text = "\n".join(lines)
    name = "table.md" if classifier is None else f"table-{classifier.stem}.md"
    (out / name).write_text(text, encoding="utf-8")
    return text


def extra_lines(scored: list[dict[str, Any]]) -> list[str]:
    """The mean and minimum of every numeric metric of the ``--also-eval`` evaluators."""
    lines = []
    names = sorted({name for r in scored for name in r.get("extra", {})})
    for name in names:
        results = [r["extra"][name] for r in scored if name in r.get("extra", {})]
        keys = sorted({k for m in results for k, v in m.items() if isinstance(v, float)})
        parts = [
            f"{key} mean {statistics.fmean(m[key] for m in results):.3f} "
            f"(min {min(m[key] for m in results):.3f})"
            for key in keys
            if all(key in m for m in results)
        ]
        lines += ["", f"{name} over {len(results)} runs: " + ", ".join(parts) + "."]
    return lines


def stage_lines(scored: list[dict[str, Any]]) -> list[str]:
    """For pipelines: each stage's mean R-precision, and how often the last stage scored at
    least as high as the one before (per prompt)."""
    staged = [r for r in scored if r.get("stages")]
    if not staged:
        return []
    names = list(staged[0]["stages"])
    means = [
        f"{name} {statistics.fmean(r['stages'][name]['r_precision'] for r in staged):.3f}"
        for name in names
    ]
    lines = ["", f"Per stage, mean R-precision: {', '.join(means)}."]
    if len(names) > 1:
        last, before = names[-1], names[-2]
        kept = sum(
            r["stages"][last]["r_precision"] >= r["stages"][before]["r_precision"] for r in staged
        )
        lines.append(f"{last} >= {before} on {kept} of {len(staged)} prompts.")
    return lines


def frame_grid(out: Path, preset: str) -> None:
    """``OUT/frames-PRESET.png``: the first kept test frame (its colour image) of each prompt,
    shapes x colours (grey: no run)."""
    tiles: list[list[np.ndarray]] = []
    size = None
    for shape in SHAPES:
        row = []
        for color in COLORS:
            path = frames_folder(out, preset, f"a {color} {shape}") / "000.png"
            if path.is_file():
                tile = np.asarray(Image.open(path).convert("RGB"))
                size = size or tile.shape[:2]
                row.append(tile)
            else:
                row.append(None)
        tiles.append(row)
    if size is None:
        return
    blank = np.full((*size, 3), 128, dtype=np.uint8)
    grid = np.concatenate(
        [np.concatenate([t if t is not None else blank for t in row], axis=1) for row in tiles]
    )
    Image.fromarray(grid).save(out / f"frames-{preset}.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/primitives_table.py", description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--prompts", nargs="+", default=all_prompts())
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per job (default: the cores divided among the jobs, at least 1)",
    )
    parser.add_argument("--studio", default=shutil.which("studio") or "studio")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        help="config overrides for every run (KEY=VALUE); {shape} and {color} in them become "
        "the prompt's",
    )
    parser.add_argument(
        "--also-eval",
        nargs="*",
        default=[],
        help="more evaluators for the last stage (e.g. guide-silhouette-iou); their numeric "
        "metrics are averaged in table.md",
    )
    parser.add_argument(
        "--no-first-alone",
        dest="first_alone",
        action="store_false",
        help="start all jobs at once (when nerfacc's CUDA code is already built)",
    )
    parser.add_argument("--summarize", action="store_true", help="only rewrite table.md")
    parser.add_argument(
        "--classifier",
        type=Path,
        default=None,
        help="with --summarize: score the kept test frames with these classifier weights",
    )
    args = parser.parse_args(argv)
    if args.classifier is not None and not args.summarize:
        parser.error("--classifier goes with --summarize (it scores the frames of finished runs)")
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    if not args.summarize:
        run_all(args)
    print(summarize(args.out, args.classifier))
    return 0


if __name__ == "__main__":
    sys.exit(main())
