"""The run directory ``<exp_root_dir>/<name>/<tag>@<timestamp>/`` and its files.

::

    configs/raw.yaml      what was asked for (preset + YAML + overrides, unresolved)
    configs/parsed.yaml   the fully resolved config (``studio resume`` needs only this)
    configs/conversion.yaml  where a converted geometry came from (parent run, step, threshold)
    ckpts/last.ckpt       latest checkpoint (+ step=<N>.ckpt periodic ones)
    save/                 it<step>-<i>.png validation grids, it<step>-test/ frames, it<step>-test.mp4,
                          it<step>-export/ exports; with system.num_particles K > 1, each particle's
                          under save/particle-<k>/ instead (k = 0 .. K-1)
    metrics.csv           per-step scalars
    finished.yaml         written when training and the test stage completed (the final step)
    cmd.txt               the command line that created (or resumed) the run

A pipeline's run directory (:mod:`studio.pipeline`) holds ``pipeline.yaml`` and one complete run
directory per stage under ``stages/<n>-<stage>/``.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from studio.config.loading import dump_yaml, load_yaml_file
from studio.errors import RunDirError

LAST = "last.ckpt"
FINISHED = "finished.yaml"
#: Checkpoint file names: ``last.ckpt``, periodic ``step=N.ckpt`` (and the older ``epoch=0-step=N.ckpt``).
_CKPT = re.compile(r"^(last|(epoch=\d+-)?step=(\d+))\.ckpt$")


def periodic_name(step: int) -> str:
    return f"step={int(step)}.ckpt"


def periodic_step(path: Path) -> Optional[int]:
    """The step in a periodic checkpoint's name (None for ``last.ckpt`` and other names)."""
    match = _CKPT.match(path.name)
    return int(match.group(3)) if match and match.group(3) else None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def particle_folder(index: int) -> str:
    """``particle-<index>``: the folder under ``save/`` of a particle's files (K > 1)."""
    return f"particle-{index}"


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def raw_config(self) -> Path:
        return self.configs / "raw.yaml"

    @property
    def parsed_config(self) -> Path:
        return self.configs / "parsed.yaml"

    @property
    def ckpts(self) -> Path:
        return self.root / "ckpts"

    @property
    def last_ckpt(self) -> Path:
        return self.ckpts / "last.ckpt"

    @property
    def save(self) -> Path:
        return self.root / "save"

    def particle_saves(self) -> list[Path]:
        """Where each particle's images, videos and exports are: ``[save/]`` for one particle,
        ``save/particle-<k>/`` for each of ``system.num_particles`` K > 1 (from parsed.yaml)."""
        system = (self.load_parsed() or {}).get("system") or {}
        count = int(system.get("num_particles") or 1) if isinstance(system, dict) else 1
        if count == 1:
            return [self.save]
        return [self.save / particle_folder(k) for k in range(count)]

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def cmd(self) -> Path:
        return self.root / "cmd.txt"

    @property
    def conversion_record(self) -> Path:
        return self.configs / "conversion.yaml"

    @property
    def finished_marker(self) -> Path:
        return self.root / FINISHED

    def is_finished(self) -> bool:
        """Whether training and the test stage completed (see :meth:`mark_finished`)."""
        return self.finished_marker.is_file()

    def finished_step(self) -> int:
        """The step recorded in ``finished.yaml`` (0 when absent or unreadable)."""
        try:
            return int((load_yaml_file(self.finished_marker) or {}).get("step", 0))
        except Exception:  # noqa: BLE001 - a damaged marker counts as step 0
            return 0

    def mark_finished(self, step: int) -> None:
        write_text_atomic(self.finished_marker, dump_yaml({"step": int(step)}))

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints (``last.ckpt`` and periodic ``step=N.ckpt``), newest first.

        Checkpoints are written to a temporary name and renamed, so every file found under a
        checkpoint name is complete; the newest is the one written last."""
        found = [p for p in self.ckpts.glob("*.ckpt") if p.is_file() and _CKPT.match(p.name)]
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name == LAST), reverse=True)

    def newest_checkpoint(self) -> Optional[Path]:
        found = self.checkpoints()
        return found[0] if found else None

    def load_parsed(self) -> dict[str, Any]:
        return load_yaml_file(self.parsed_config)

    def record_command(self, argv: list[str] | None = None) -> None:
        argv = sys.argv if argv is None else argv
        line = " ".join(shlex.quote(a) for a in argv)
        with self.cmd.open("a", encoding="utf-8") as handle:
            handle.write(f"{_dt.datetime.now().isoformat(timespec='seconds')} {line}\n")


def new_timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_root(parsed: dict[str, Any]) -> Path:
    """``<exp_root_dir>/<name>/<tag>@<timestamp>`` for ``parsed`` (fills in ``timestamp``); a
    ``-<n>`` suffix keeps it from an existing folder when timestamps are on."""
    base = Path(parsed["exp_root_dir"]) / parsed["name"]
    tag = parsed["tag"]
    if parsed.get("use_timestamp", True):
        if not parsed.get("timestamp"):
            parsed["timestamp"] = new_timestamp()
        leaf = f"{tag}@{parsed['timestamp']}"
    else:
        leaf = tag
    root = base / leaf
    suffix = 1
    while parsed.get("use_timestamp", True) and root.exists():
        root = base / f"{leaf}-{suffix}"
        suffix += 1
    return root


def holds_a_run(root: Path) -> bool:
    """Whether ``root`` is a run's (or a pipeline's) directory."""
    return (root / "configs" / "parsed.yaml").is_file() or (root / PIPELINE_FILE).is_file()


def claim_root(parsed: dict[str, Any], overwrite: bool = False) -> Path:
    """Create the new run's directory (:func:`new_root`) and return it.

    Creation is atomic, so two runs started at once never share a directory: with timestamps on,
    a taken name gets the next ``-<n>`` suffix; with ``use_timestamp: false``, a directory that
    holds a run is refused (naming the process using it, if any) unless ``overwrite``, which
    replaces it. An unwritable place is one paragraph, not a traceback."""
    import shutil

    from studio.runlock import describe, holder

    root = new_root(parsed)
    timestamped = parsed.get("use_timestamp", True)
    for _attempt in range(1000):
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            root.mkdir()
            return root
        except FileExistsError:
            if timestamped:
                root = new_root(parsed)
                continue
            if not holds_a_run(root) and not any(root.iterdir()):
                return root  # an empty folder: use it
            current = holder(root)
            if current is not None:
                raise RunDirError(
                    f"{root} is in use by {describe(current)}. Wait for it, or give this run "
                    "another tag= (or use_timestamp=true)."
                ) from None
            if not overwrite:
                raise RunDirError(
                    f"{root} holds a run already (use_timestamp=false, tag {parsed['tag']!r}). "
                    f"Continue it with `studio resume {root}`, give this run another tag=, or "
                    "pass --overwrite to replace it."
                ) from None
            shutil.rmtree(root)
        except OSError as exc:
            raise RunDirError(
                f"Cannot create the run directory {root} ({exc.strerror or exc}). Set "
                "exp_root_dir=<a folder you can write>, or run from a writable directory."
            ) from None
    raise RunDirError(f"Could not find a free run directory next to {root}.")


def has_trained(root: Path) -> bool:
    """Whether anything under ``root`` holds a checkpoint or a logged step (a run worth keeping)."""
    for metrics in root.rglob("metrics.csv"):
        with metrics.open(encoding="utf-8") as handle:
            if sum(1 for _ in handle) > 1:
                return True
    return any(p.is_file() for p in root.rglob("*.ckpt"))


def remove_untrained(root: Path) -> bool:
    """Delete a run directory this command created when nothing was trained in it (the start
    failed); returns whether it was removed."""
    import shutil

    if not root.is_dir() or has_trained(root):
        return False
    shutil.rmtree(root, ignore_errors=True)
    return True


def remove_temporary_files(run: RunDir) -> list[Path]:
    """Remove what interrupted atomic writes left in ``ckpts/`` and ``configs/`` (``.*.tmp``)."""
    removed = []
    for folder in (run.ckpts, run.configs):
        for path in folder.glob(".*.tmp") if folder.is_dir() else []:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def create_at(root: Path, parsed: dict[str, Any], raw: dict[str, Any]) -> RunDir:
    """Make the run directory ``root`` and write its configs."""
    run = RunDir(root)
    for folder in (run.configs, run.ckpts, run.save):
        folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run.raw_config, dump_yaml(raw))
    write_text_atomic(run.parsed_config, dump_yaml(parsed))
    return run


def create(parsed: dict[str, Any], raw: dict[str, Any]) -> RunDir:
    """Make a new run directory for ``parsed`` (fills in ``timestamp``) and write its configs."""
    return create_at(new_root(parsed), parsed, raw)


def open_existing(path: str | Path) -> RunDir:
    """A :class:`RunDir` for an existing run (``RunDirError`` explaining what is missing)."""
    run = RunDir(Path(path))
    if not run.root.is_dir():
        raise RunDirError(
            f"{str(path)!r} is not a directory. Pass the run directory printed by `studio run`, "
            f"e.g. outputs/<name>/<tag>@<timestamp>."
        )
    if not run.parsed_config.is_file():
        raise RunDirError(
            f"{str(path)!r} is not a studio run directory: configs/parsed.yaml is missing."
        )
    return run


# -- pipelines: one run directory holding a run directory per stage ----------------------------

PIPELINE_FILE = "pipeline.yaml"
STAGES_DIR = "stages"


@dataclass(frozen=True)
class StageRun:
    """One stage of a pipeline run: its number (1-based), name, method and run directory."""

    number: int
    name: str
    method: str
    run: RunDir


@dataclass(frozen=True)
class PipelineDir:
    """``<root>/pipeline.yaml`` plus ``<root>/stages/<n>-<stage>/`` run directories."""

    root: Path

    @property
    def file(self) -> Path:
        return self.root / PIPELINE_FILE

    @property
    def cmd(self) -> Path:
        return self.root / "cmd.txt"

    def load(self) -> dict[str, Any]:
        return load_yaml_file(self.file)

    @property
    def method(self) -> str:
        return str(self.load()["method"])

    def stages(self) -> list[StageRun]:
        rows = self.load().get("stages") or []
        return [
            StageRun(i + 1, str(row["name"]), str(row["method"]), RunDir(self.root / row["dir"]))
            for i, row in enumerate(rows)
        ]

    def stage(self, name: str) -> StageRun:
        """The stage called ``name`` (``RunDirError`` listing the stages when there is none)."""
        stages = self.stages()
        for stage in stages:
            if stage.name == name or str(stage.number) == name:
                return stage
        raise RunDirError(
            f"{self.root} has no stage {name!r}; its stages are "
            f"{', '.join(s.name for s in stages)}."
        )

    def last_finished(self) -> Optional[StageRun]:
        finished = [s for s in self.stages() if s.run.is_finished()]
        return finished[-1] if finished else None

    def record_command(self, argv: list[str] | None = None) -> None:
        RunDir(self.root).record_command(argv)


def stage_dir_name(number: int, name: str) -> str:
    return f"{number}-{name}"


def is_pipeline_dir(path: str | Path) -> bool:
    return (Path(path) / PIPELINE_FILE).is_file()


def open_run(path: str | Path, stage: Optional[str] = None) -> RunDir:
    """The run directory ``studio test|export|eval|resume`` act on for ``path``.

    A pipeline's directory gives its last finished stage, or the stage named ``stage``; a run or
    stage directory gives itself (``stage`` must then be None)."""
    if is_pipeline_dir(path):
        pipeline = PipelineDir(Path(path))
        if stage is not None:
            return open_existing(pipeline.stage(stage).run.root)
        last = pipeline.last_finished()
        if last is None:
            names = ", ".join(s.name for s in pipeline.stages())
            raise RunDirError(
                f"{path} is a pipeline whose stages ({names}) have not finished yet. Continue it "
                f"with `studio resume {path}`, or pick a stage with --stage NAME."
            )
        return open_existing(last.run.root)
    if stage is not None:
        raise RunDirError(
            f"--stage {stage} applies to a pipeline's run directory; {path} is a single run."
        )
    return open_existing(path)


def find_checkpoint(path: str | Path, key: str) -> tuple[Path, Optional[RunDir]]:
    """The checkpoint ``path`` stands for, and its run directory when it is inside one.

    ``path`` is a checkpoint file, a run directory (its newest checkpoint), a stage directory, or
    a pipeline's directory (its last finished stage). ``key`` names the setting, for the error."""
    candidate = Path(path).expanduser()
    if candidate.is_file():
        parent = candidate.parent.parent if candidate.parent.name == "ckpts" else None
        run = RunDir(parent) if parent is not None and (parent / "configs").is_dir() else None
        return candidate, run
    if not candidate.is_dir():
        raise RunDirError(
            f"{key}={str(path)!r}: no such file or directory. Give a run directory printed by "
            "`studio run` (or one of its stages/<n>-<stage>/ folders) or a checkpoint file."
        )
    try:
        run = open_run(candidate)
    except RunDirError as exc:
        raise RunDirError(f"{key}={str(path)!r}: {exc}") from None
    checkpoint = run.newest_checkpoint()
    if checkpoint is None:
        raise RunDirError(
            f"{key}={str(path)!r}: the run {run.root} has no checkpoint yet (ckpts/ is empty). "
            "Train it first, or give another run."
        )
    return checkpoint, run
