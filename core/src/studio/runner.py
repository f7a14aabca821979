"""What the CLI's run/resume/test/export commands do, on top of the trainer.

``execute`` runs one stage sequence inside the current process (one rank). ``start`` decides
between running in-process (one device) and launching one worker per device.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from studio.config.convert import structure
from studio.config.experiment import ExperimentConfig
from studio.config.loading import dump_yaml
from studio.config.resolve import apply_user_overrides, resolve
from studio.errors import ConfigError
from studio.rundir import (
    RunDir,
    new_timestamp,
    remove_temporary_files,
    remove_untrained,
    write_text_atomic,
)

Stage = Literal["fit", "test", "export"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _say_videos(videos: list[Path]) -> None:
    """``Test video: PATH`` (one line per particle's video), or that none was written."""
    if not videos:
        _say("The test stage wrote no video.")
    for video in videos:
        _say(f"Test video: {video}")


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every leaf that differs between two configs
    (a tuple and a list of the same items are the same value)."""
    old, new = _plain(old), _plain(new)
    if isinstance(old, dict) and isinstance(new, dict):
        rows = []
        for key in [*old, *(k for k in new if k not in old)]:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            rows += changed_keys(old.get(key, _ABSENT), new.get(key, _ABSENT), dotted)
        return rows
    return [] if old == new else [(prefix, old, new)]


_ABSENT = "(absent)"


def _plain(value: Any) -> Any:
    """Tuples as lists, at any depth (YAML reads back lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def reconfigure(run: RunDir, overrides: list[str]) -> list[tuple[str, Any, Any]]:
    """Apply ``key=value`` overrides to an existing run's parsed config (validated, then saved).

    The previous ``parsed.yaml`` is kept as ``configs/history/parsed-<timestamp>.yaml`` and every
    changed key is printed; returns the changes."""
    if not overrides:
        return []
    old = run.load_parsed()
    resolved = resolve(apply_user_overrides(old, overrides))
    changes = changed_keys(old, resolved.parsed)
    for key, before, after in changes:
        if key.endswith("num_particles"):
            raise ConfigError(
                f"{key}={after!r}: this run trained {before!r} particle(s), and its checkpoint "
                "holds their weights; the count cannot change. Start a new run (`studio run`) "
                "for another number of particles."
            )
    if not changes:
        _say(f"The overrides change nothing in {run.parsed_config}.")
        return []
    history = run.configs / "history"
    history.mkdir(parents=True, exist_ok=True)
    kept = history / f"parsed-{new_timestamp()}.yaml"
    suffix = 1
    while kept.exists():
        kept = history / f"parsed-{new_timestamp()}-{suffix}.yaml"
        suffix += 1
    kept.write_bytes(run.parsed_config.read_bytes())
    write_text_atomic(run.parsed_config, dump_yaml(resolved.parsed))
    lines = [f"  {key}: {before!r} -> {after!r}" for key, before, after in changes]
    _say(f"Changed {len(changes)} key(s) of {run.parsed_config} (previous config: {kept}):")
    for line in lines:
        _say(line)
    return changes


def _export_after_fit(trainer: Any, is_main: bool) -> None:
    """The exporter after a finished fit when the system's ``export_after_fit`` asks for it."""
    if not getattr(trainer.system.cfg, "export_after_fit", False):
        return
    written = trainer.export()
    if is_main:
        folder = Path(written[0]).parent if written else trainer.run.save
        _say(f"Exported {len(written)} file(s) to {folder}")


def execute(run: RunDir, stage: Stage, resume: bool = False, label: str = "") -> int:
    """Run ``stage`` in this process (one rank of possibly several); returns an exit code.

    A fit that trains to ``trainer.max_steps`` and renders its test views marks the run finished
    (``finished.yaml``); one stopped early by Ctrl+C does not. ``label`` prefixes the progress bar
    (a pipeline's ``[2/2 refine]``)."""
    from studio.training.trainer import Trainer

    experiment = structure(run.load_parsed(), ExperimentConfig)
    trainer = Trainer(run, experiment, resume=resume, label=label)
    is_main = trainer.ctx.is_main
    try:
        trainer.setup(from_checkpoint=resume or stage != "fit")
        if stage == "fit":
            trainer.fit()
            videos = trainer.test()
            if is_main:
                _say_videos(videos)
                if trainer.global_step >= experiment.trainer.max_steps:
                    run.mark_finished(trainer.global_step)
            if trainer.global_step >= experiment.trainer.max_steps:
                _export_after_fit(trainer, is_main)
        else:
            trainer.load_weights()
            if stage == "test":
                videos = trainer.test()
                if is_main:
                    _say_videos(videos)
            else:
                written = trainer.export()
                if is_main:
                    folder = Path(written[0]).parent if written else run.save
                    _say(f"Exported {len(written)} file(s) to {folder}")
    finally:
        trainer.teardown()
    if is_main:
        _say(f"Run directory: {run.root}")
    return 0


def start(
    run: RunDir,
    stage: Stage,
    resume: bool,
    gpus: list[str] | None,
    nproc: int | None,
    label: str = "",
) -> int:
    """Run in-process for one device, otherwise launch one worker per device.

    Holds the run's lock (:class:`studio.runlock.RunLock`) throughout and first removes what
    interrupted writes left behind."""
    from studio.runlock import RunLock

    with RunLock(run.root, say=_say):
        for leftover in remove_temporary_files(run):
            _say(f"Removed {leftover.name}, left by an interrupted write.")
        count = len(gpus) if gpus else (nproc or 1)
        if count <= 1:
            if gpus:
                import os

                os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
                os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]
            return execute(run, stage, resume, label)
        from studio.training.launch import launch

        _say(f"Launching {count} processes ({'GPUs ' + ','.join(gpus) if gpus else 'CPU, gloo'}).")
        return launch(run.root, stage, resume, count, gpus, label)


def start_new(run: RunDir, gpus: list[str] | None, nproc: int | None, label: str = "") -> int:
    """:func:`start` a freshly created run; if it fails before anything was trained, its
    directory is removed (a refused start leaves nothing behind)."""
    try:
        code = start(run, "fit", False, gpus, nproc, label)
    except BaseException:
        _drop_if_untrained(run.root)
        raise
    if code not in (0, 130, 143):
        _drop_if_untrained(run.root)
    return code


def _drop_if_untrained(root: Path) -> None:
    if remove_untrained(root):
        _say(f"Nothing was trained; removed {root}.")
