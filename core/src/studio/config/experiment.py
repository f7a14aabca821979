"""The top-level experiment config and the trainer/checkpoint/optimizer blocks.

Field names and defaults follow the reference's experiment config so that its presets and
command lines carry over (``name``, ``tag``, ``seed``, ``exp_root_dir``, ``trainer.max_steps``,
``trainer.val_check_interval``, ``checkpoint.every_n_train_steps``, ...).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs

Precision = Literal["32", "32-true", "16-mixed", "bf16-mixed"]


@attrs.define(kw_only=True)
class TrainerConfig:
    """How the training loop runs (the reference passes these to its trainer)."""

    max_steps: int = 10000
    val_check_interval: int = 200
    log_every_n_steps: int = 1
    num_sanity_val_steps: int = 0
    enable_progress_bar: bool = True
    precision: Precision = "32"
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    accelerator: Literal["auto", "cpu", "cuda"] = "auto"
    tensorboard: bool = False


@attrs.define(kw_only=True)
class CheckpointConfig:
    """When checkpoints are written. ``last.ckpt`` is refreshed at every validation and at the end."""

    save_last: bool = True
    save_top_k: int = -1
    every_n_train_steps: Optional[int] = None


@attrs.define(kw_only=True)
class OptimizerConfig:
    """``torch.optim.<name>(param_groups, **args)``.

    ``params`` maps dotted attribute paths of the system (``geometry``, ``geometry.encoding``,
    ``background``) to per-group arguments (``{lr: 0.01}``); parameters not listed are not
    optimized. Without ``params`` every parameter of the system is optimized with ``args``.
    """

    name: Literal["Adam", "AdamW", "Adamax", "SGD"] = "Adam"
    args: dict[str, Any] = attrs.Factory(dict)
    params: Optional[dict[str, dict[str, Any]]] = None


@attrs.define(kw_only=True)
class SchedulerConfig:
    """``torch.optim.lr_scheduler.<name>``, stepped once per optimizer step.

    ``SequentialLR`` takes ``args.schedulers`` (a list of scheduler configs) and ``args.milestones``.
    """

    name: Literal[
        "LinearLR", "ExponentialLR", "SequentialLR", "ConstantLR", "StepLR", "CosineAnnealingLR"
    ]
    interval: Literal["step"] = "step"
    args: dict[str, Any] = attrs.Factory(dict)


@attrs.define(kw_only=True)
class ExperimentConfig:
    """Everything a run needs; ``configs/parsed.yaml`` is this, fully resolved."""

    method: str
    name: str = "default"
    description: str = ""
    tag: str = ""
    seed: int = 0
    use_timestamp: bool = True
    timestamp: Optional[str] = None
    exp_root_dir: str = "outputs"
    data_type: str = "random-camera"
    data: dict[str, Any] = attrs.Factory(dict)
    system: dict[str, Any] = attrs.Factory(dict)
    trainer: TrainerConfig = attrs.Factory(TrainerConfig)
    checkpoint: CheckpointConfig = attrs.Factory(CheckpointConfig)
