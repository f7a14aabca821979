"""What the CLI's run/resume/test/export commands do, on top of the trainer.

``execute`` runs one stage sequence inside the current process (one rank). ``start`` decides
between running in-process (one device) and launching one worker per device.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from studio.config.convert import structure
from studio.config.experiment import ExperimentConfig
from studio.config.loading import apply_overrides, dump_yaml
from studio.config.resolve import resolve
from studio.rundir import RunDir

Stage = Literal["fit", "test", "export"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reconfigure(run: RunDir, overrides: list[str]) -> None:
    """Apply ``key=value`` overrides to an existing run's parsed config (validated, then saved)."""
    if not overrides:
        return
    resolved = resolve(apply_overrides(run.load_parsed(), overrides))
    run.parsed_config.write_text(dump_yaml(resolved.parsed), encoding="utf-8")


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
            video = trainer.test()
            if is_main:
                _say(f"Test video: {video}" if video else "The test stage wrote no video.")
                if trainer.global_step >= experiment.trainer.max_steps:
                    run.mark_finished(trainer.global_step)
        else:
            trainer.load_weights()
            if stage == "test":
                video = trainer.test()
                if is_main:
                    _say(f"Test video: {video}" if video else "The test stage wrote no video.")
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
    """Run in-process for one device, otherwise launch one worker per device."""
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
