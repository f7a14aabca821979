"""Optimizers and learning-rate schedulers from config (``system.optimizer``, ``system.scheduler``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from studio.config.convert import structure
from studio.config.experiment import OptimizerConfig, SchedulerConfig
from studio.errors import ConfigError

OPTIMIZERS = {
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "Adamax": torch.optim.Adamax,
    "SGD": torch.optim.SGD,
}


def resolve_attribute(system: nn.Module, dotted: str) -> Any:
    """``system.<dotted>`` (each part an attribute); a ConfigError naming the group if absent."""
    obj: Any = system
    for part in dotted.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"system.optimizer.params.{dotted}: the system has no attribute {dotted!r} to "
                f"optimize. Name sub-modules of the system such as geometry, material, background."
            )
        obj = getattr(obj, part)
    return obj


def _object_parameters(system: nn.Module) -> list[nn.Parameter]:
    """Trainable parameters of the system's non-module objects (a guidance's LoRA)."""
    objects = getattr(system, "trainable_objects", dict)()
    return [p for obj in objects.values() for p in obj.trainable_parameters()]


def parameter_groups(system: nn.Module, cfg: OptimizerConfig) -> list[dict[str, Any]]:
    """Param groups (each with a ``name``) for ``cfg``; only listed parameters when ``params`` set.

    A listed name may be a sub-module, a parameter, or an object owning trainable parameters
    (``guidance`` for a guidance with a LoRA); a system's ``optimizer_targets(name)`` may resolve
    a name to several (a part of every particle, :mod:`studio.systems.lift3d`). Without ``params``, every trainable parameter of
    the system and of such objects is in one group ``all``."""
    if cfg.params is None:
        params = [p for p in system.parameters() if p.requires_grad]
        return [{"name": "all", "params": params + _object_parameters(system)}]
    groups = []
    for dotted, args in cfg.params.items():
        targets = getattr(system, "optimizer_targets", None)
        found = targets(dotted) if targets else [resolve_attribute(system, dotted)]
        params = [p for target in found for p in _target_parameters(target, dotted)]
        groups.append({"name": dotted, "params": params, **(args or {})})
    return groups


def _target_parameters(target: Any, dotted: str) -> list[nn.Parameter]:
    """The trainable parameters of what an optimizer group names (module, parameter, object)."""
    if isinstance(target, nn.Parameter):
        return [target]
    if isinstance(target, nn.Module):
        return [p for p in target.parameters() if p.requires_grad]
    if callable(getattr(target, "trainable_parameters", None)):
        return list(target.trainable_parameters())
    raise ConfigError(
        f"system.optimizer.params.{dotted}: {dotted!r} is a {type(target).__name__}, "
        f"neither a module, a parameter nor an object with trainable parameters."
    )


#: Optimizers whose fused CUDA implementation studio uses by default (same update rule).
FUSED_BY_DEFAULT = ("Adam", "AdamW")


def wants_fused(name: str, args: dict[str, Any], groups: list[dict[str, Any]]) -> bool:
    """Adam/AdamW over CUDA float parameters, with neither ``fused`` nor ``foreach`` set.

    The fused kernel is the same update in one launch instead of a dozen, and with a GradScaler
    it takes the scale and the inf check as tensors, which saves a host sync per step."""
    if name not in FUSED_BY_DEFAULT or "fused" in args or "foreach" in args:
        return False
    params = [p for group in groups for p in group["params"]]
    return all(p.is_cuda and p.is_floating_point() for p in params)


def optimizer_args(cfg: OptimizerConfig) -> dict[str, Any]:
    """``cfg.args`` as the optimizer takes them (``betas`` a tuple)."""
    args = dict(cfg.args)
    if "betas" in args and isinstance(args["betas"], list):
        args["betas"] = tuple(args["betas"])
    return args


def build_optimizer(system: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """``torch.optim.<name>`` over the configured parameter groups (fused Adam on CUDA unless
    ``fused`` or ``foreach`` is given in ``args``)."""
    groups = [g for g in parameter_groups(system, cfg) if g["params"]]
    if not groups:
        raise ConfigError(
            "system.optimizer: no trainable parameters were selected; check system.optimizer.params."
        )
    args = optimizer_args(cfg)
    if wants_fused(cfg.name, args, groups):
        args["fused"] = True
    try:
        return OPTIMIZERS[cfg.name](groups, **args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"system.optimizer: torch.optim.{cfg.name} rejected its args: {exc}."
        ) from None


def decay_gamma(final_factor: float, steps: int, path: str) -> float:
    """``gamma = final_factor ** (1 / steps)``: ``ExponentialLR`` reaches ``final_factor`` times
    the learning rate after ``steps`` steps."""
    if not 0.0 < final_factor <= 1.0 or steps < 1:
        raise ConfigError(
            f"{path}.args.final_factor={final_factor!r} over {steps} steps: give a factor in "
            "(0, 1] and a run with steps left after the schedulers before this one (the decay "
            "ends at trainer.max_steps)."
        )
    return final_factor ** (1.0 / steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: SchedulerConfig | dict | None,
    path: str = "system.scheduler",
    max_steps: int | None = None,
    start_step: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The configured scheduler. ``ExponentialLR`` may take ``final_factor`` instead of
    ``gamma``: the decay then reaches that factor at ``max_steps`` (the run's last step),
    counting from ``start_step`` (where it starts inside a ``SequentialLR``)."""
    if cfg is None:
        return None
    if isinstance(cfg, dict):
        cfg = structure(cfg, SchedulerConfig, path)
    cls = getattr(torch.optim.lr_scheduler, cfg.name)
    args = dict(cfg.args)
    if cfg.name == "SequentialLR":
        children = args.pop("schedulers", None)
        if not isinstance(children, list) or not children:
            raise ConfigError(f"{path}.args.schedulers: SequentialLR needs a list of schedulers.")
        starts = [start_step, *(start_step + int(m) for m in args.get("milestones") or [])]
        args["schedulers"] = [
            build_scheduler(
                optimizer,
                child,
                f"{path}.args.schedulers[{i}]",
                max_steps,
                starts[min(i, len(starts) - 1)],
            )
            for i, child in enumerate(children)
        ]
    if cfg.name == "ExponentialLR" and "final_factor" in args:
        if "gamma" in args or max_steps is None:
            raise ConfigError(
                f"{path}.args: give either gamma or final_factor (final_factor needs the run's "
                "trainer.max_steps to spread the decay over)."
            )
        args["gamma"] = decay_gamma(float(args.pop("final_factor")), max_steps - start_step, path)
    try:
        return cls(optimizer, **args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {cfg.name} rejected its args: {exc}.") from None
