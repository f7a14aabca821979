"""The top-level experiment config and the trainer/checkpoint/optimizer blocks.

Field names and defaults follow the reference's experiment config so that its presets and
command lines carry over (``name``, ``tag``, ``seed``, ``exp_root_dir``, ``trainer.max_steps``,
``trainer.val_check_interval``, ``checkpoint.every_n_train_steps``, ...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import attrs

from studio.config.bounds import NonNegativeFloat, NonNegativeInt, PositiveInt, Range

Precision = Literal["32", "32-true", "16-mixed", "bf16-mixed"]


@attrs.define(kw_only=True)
class TrainerConfig:
    """How the training loop runs (the reference passes these to its trainer)."""

    max_steps: PositiveInt = 10000
    """Optimizer steps to train for; the test views are rendered after the last one."""
    val_check_interval: PositiveInt = 200
    """Validate (render the validation views) and refresh ``last.ckpt`` every this many steps."""
    log_every_n_steps: PositiveInt = 1
    """Write the training scalars to ``metrics.csv`` (and TensorBoard) every this many steps."""
    num_sanity_val_steps: NonNegativeInt = 0
    """Validation views rendered before the first training step of a fresh run (0: none)."""
    enable_progress_bar: bool = True
    """Show a progress bar with the latest losses on stderr (rank 0 only)."""
    precision: Precision = "32"
    """Training precision: ``32``/``32-true`` float32, ``16-mixed`` float16 autocast with a grad
    scaler (float32 on CPU), ``bf16-mixed`` bfloat16 autocast."""
    accumulate_grad_batches: PositiveInt = 1
    """Batches whose gradients are averaged into one optimizer step (1: no accumulation)."""
    gradient_clip_val: Optional[NonNegativeFloat] = None
    """Clip the global gradient norm of the optimized parameters to this value (None or 0: off)."""
    accelerator: Literal["auto", "cpu", "cuda"] = "auto"
    """Device to train on: ``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    tensorboard: bool = False
    """Also log the training scalars to TensorBoard under ``tb_logs/`` (needs tensorboard)."""
    max_nonfinite_steps: NonNegativeInt = 20
    """Stop after this many steps in a row skipped for a NaN/inf loss or gradient (0: never)."""
    cuda_graphs: bool = True
    """On CUDA, capture the training step as CUDA graphs (one launch per step) where the system,
    its components and these options allow it; the run log says whether steps are captured and,
    if not, why. False: every step runs eagerly."""


@attrs.define(kw_only=True)
class CheckpointConfig:
    """When checkpoints are written. ``last.ckpt`` is refreshed at every validation and at the end."""

    save_last: bool = True
    """Write ``ckpts/last.ckpt`` at every validation and at the end of training."""
    save_top_k: Annotated[int, Range(low=-1)] = -1
    """How many periodic ``step=N.ckpt`` files to keep, the newest (-1 or 0: keep all)."""
    every_n_train_steps: Optional[PositiveInt] = None
    """Also write a periodic ``step=N.ckpt`` every this many steps (None or 0: never)."""


@attrs.define(kw_only=True)
class OptimizerConfig:
    """``torch.optim.<name>(param_groups, **args)``.

    ``params`` maps dotted attribute paths of the system (``geometry``, ``geometry.encoding``,
    ``background``) to per-group arguments (``{lr: 0.01}``); parameters not listed are not
    optimized. Without ``params`` every parameter of the system is optimized with ``args``.
    """

    name: Literal["Adam", "AdamW", "Adamax", "SGD"] = "Adam"
    """The ``torch.optim`` class: Adam, AdamW, Adamax or SGD."""
    args: dict[str, Any] = attrs.Factory(dict)
    """Keyword arguments of the optimizer for every group (``lr``, ``betas``, ``eps``, ...)."""
    params: Optional[dict[str, dict[str, Any]]] = None
    """Parameter groups: dotted system attribute -> its own arguments (e.g. ``geometry: {lr:
    0.01}``); only listed parameters are optimized; None: all parameters, one group."""


@attrs.define(kw_only=True)
class SchedulerConfig:
    """``torch.optim.lr_scheduler.<name>``, stepped once per optimizer step.

    ``SequentialLR`` takes ``args.schedulers`` (a list of scheduler configs) and ``args.milestones``.
    """

    name: Literal[
        "LinearLR", "ExponentialLR", "SequentialLR", "ConstantLR", "StepLR", "CosineAnnealingLR"
    ]
    """The ``torch.optim.lr_scheduler`` class."""
    interval: Literal["step"] = "step"
    """When the scheduler steps: ``step`` (after every optimizer step; the only choice)."""
    args: dict[str, Any] = attrs.Factory(dict)
    """Keyword arguments of the scheduler (``SequentialLR``: ``schedulers`` and ``milestones``;
    ``ExponentialLR``: ``final_factor`` instead of ``gamma`` decays to that factor at
    ``trainer.max_steps``)."""


@attrs.define(kw_only=True)
class ExperimentConfig:
    """Everything a run needs; ``configs/parsed.yaml`` is this, fully resolved."""

    method: str
    """The registered method this config trains (``studio methods`` lists them)."""
    name: str = "default"
    """Experiment name: runs go to ``<exp_root_dir>/<name>/``."""
    description: str = ""
    """Free text describing the run; recorded in the config, not used otherwise."""
    tag: str = ""
    """Run folder name before ``@<timestamp>``; empty: derived from the prompt (or the method)."""
    seed: NonNegativeInt = 0
    """Random seed; each process seeds with ``seed + rank``."""
    use_timestamp: bool = True
    """Append ``@<timestamp>`` to the run folder (false: ``<tag>`` alone, reused if it exists)."""
    timestamp: Optional[str] = None
    """The run folder's timestamp ``YYYYmmdd-HHMMSS``; None: the time the run is created."""
    exp_root_dir: str = "outputs"
    """Root folder of all experiments."""
    data_type: str = "random-camera"
    """The registered data module that supplies the camera batches."""
    data: dict[str, Any] = attrs.Factory(dict)
    """The data module's config (keys of the ``data_type``'s config)."""
    system: dict[str, Any] = attrs.Factory(dict)
    """The method's system config: its components (``*_type`` and their blocks), losses,
    optimizer."""
    trainer: TrainerConfig = attrs.Factory(TrainerConfig)
    """How the training loop runs (steps, validation, precision, device)."""
    checkpoint: CheckpointConfig = attrs.Factory(CheckpointConfig)
    """When checkpoints are written and how many are kept."""
