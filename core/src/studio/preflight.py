"""What is checked after a run's config is resolved and before its run directory is created.

Config resolution already checks every value (types, bounds, component configs and their
``validate_config``). Here come the checks that need more than the config: the optimizer and
scheduler accept their arguments (built over a dummy parameter), the requested devices exist, the
pretrained models the method names can be had (local, embedded, cached, or downloadable now), and
the places studio writes to are writable. Each failure is one paragraph naming the key, the value
and the fix; nothing is created.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from studio.config.loading import get_dotted
from studio.errors import ConfigError, ModelNotAvailableError, RunDirError
from studio.paths import cache_dir


def check_optimizer(
    system_cfg: dict[str, Any], path: str = "system", max_steps: Optional[int] = None
) -> None:
    """Build the configured optimizer and scheduler over dummy parameters (one per group)."""
    import torch

    from studio.config.convert import structure
    from studio.config.experiment import OptimizerConfig
    from studio.training.optim import OPTIMIZERS, build_scheduler, optimizer_args

    cfg = structure(system_cfg.get("optimizer") or {}, OptimizerConfig, f"{path}.optimizer")
    check_finite_numbers(cfg.args, f"{path}.optimizer.args")
    for group, args in (cfg.params or {}).items():
        check_finite_numbers(args or {}, f"{path}.optimizer.params.{group}")
    names = list(cfg.params) if cfg.params is not None else ["all"]
    groups = [
        {
            "name": name,
            "params": [torch.zeros(1, requires_grad=True)],
            **((cfg.params or {}).get(name) or {}),
        }
        for name in names
    ]
    try:
        optimizer = OPTIMIZERS[cfg.name](groups, **optimizer_args(cfg))
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{path}.optimizer: torch.optim.{cfg.name} rejected its arguments: {exc}. Check "
            f"{path}.optimizer.args and {path}.optimizer.params.<group>.*"
        ) from None
    for name in names:
        for key in (cfg.params or {}).get(name) or {}:
            if key not in optimizer.defaults:
                import difflib

                close = difflib.get_close_matches(key, list(optimizer.defaults), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{path}.optimizer.params.{name}.{key}: torch.optim.{cfg.name} has no "
                    f"argument {key!r}{hint}; its arguments: {', '.join(optimizer.defaults)}."
                )
    build_scheduler(optimizer, system_cfg.get("scheduler"), f"{path}.scheduler", max_steps)


def check_finite_numbers(values: dict[str, Any], path: str) -> None:
    """Every number in a free-form mapping is finite (``lr: .inf`` trains to NaN)."""
    import math

    for key, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{path}.{key}={value!r}: give a finite number.")


def check_devices(accelerator: str, gpus: Optional[list[str]], nproc: Optional[int]) -> None:
    if nproc is not None and nproc < 1:
        raise ConfigError(f"--nproc {nproc}: give at least 1 process (or leave it out).")
    wants_cuda = accelerator == "cuda" or bool(gpus)
    if not wants_cuda:
        return
    import torch

    if not torch.cuda.is_available():
        what = f"--gpus {','.join(gpus)}" if gpus else "trainer.accelerator=cuda"
        raise ConfigError(
            f"{what}: torch sees no CUDA device on this machine (torch {torch.__version__}). "
            "Run on a machine with a GPU, or use trainer.accelerator=auto (or cpu) without --gpus."
        )
    count = torch.cuda.device_count()
    missing = [g for g in gpus or [] if int(g) >= count]
    if missing:
        raise ConfigError(
            f"--gpus {','.join(gpus or [])}: this machine has {count} CUDA device(s) "
            f"(0..{count - 1}); GPU {', '.join(missing)} does not exist."
        )


def check_models(parsed: dict[str, Any], model_keys: tuple[str, ...]) -> None:
    """Every pretrained model named at the method's ``model_keys`` resolves (a local folder, an
    embedded model, the Hugging Face cache, or the hub when it can be reached: then it is
    downloaded now, before anything is created)."""
    from studio.models.hub import resolve_model

    seen: set[str] = set()
    for key in model_keys:
        try:
            name = get_dotted(parsed, key)
        except KeyError:
            continue
        if not isinstance(name, str) or name in seen:
            continue
        seen.add(name)
        try:
            resolve_model(name, config_key=key)
        except ModelNotAvailableError as exc:
            raise ConfigError(str(exc)) from None


def check_writable(folder: Path, what: str, fix: str) -> None:
    """``folder`` exists as a writable folder, or can be created (checked on its nearest existing
    ancestor, so nothing is created here)."""
    folder = folder.expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable by this user"
    if problem:
        raise RunDirError(f"{what} {str(folder)!r} is not writable ({problem}). {fix}")


def check_places(parsed: dict[str, Any]) -> None:
    check_writable(
        Path(parsed["exp_root_dir"]),
        "exp_root_dir",
        "Set exp_root_dir=<a folder you can write> (runs go below it), or run from a "
        "writable current directory.",
    )
    check_writable(
        cache_dir(),
        "The cache folder",
        "Set STUDIO_CACHE_DIR to a writable folder (studio keeps text embeddings and compiled "
        "kernels there).",
    )


def check_before_creating(
    parsed: dict[str, Any],
    model_keys: tuple[str, ...],
    gpus: Optional[list[str]] = None,
    nproc: Optional[int] = None,
) -> None:
    """Every check above, cheapest first."""
    check_devices(str((parsed.get("trainer") or {}).get("accelerator", "auto")), gpus, nproc)
    check_places(parsed)
    check_optimizer(
        parsed.get("system") or {}, max_steps=(parsed.get("trainer") or {}).get("max_steps")
    )
    check_models(parsed, model_keys)
