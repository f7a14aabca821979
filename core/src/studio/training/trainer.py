"""Our training loop: fit (train + periodic validation + checkpoints), test, export.

One :class:`Trainer` runs in every process of a run (one per GPU, or one on CPU). Rank 0 alone
writes files; validation and test views are split across ranks and their images gathered on rank 0.

Exactness of resume: a checkpoint holds the system's parameters and buffers, optimizer, scheduler,
AMP scaler, the step and every rank's RNG states; resuming restores all of them right before the
next step, so a run stopped at step k and resumed ends bit-identical to an uninterrupted one
(deterministic CPU kernels).

Non-finite steps: a step whose loss or gradients hold inf/NaN is skipped (the parameters and the
optimizer state stay as they were; the step still counts towards ``max_steps`` and the scheduler)
and logged ``train/nonfinite`` = 1 in ``metrics.csv`` (a column always written: 0 for the other
steps). Every precision steps through a ``GradScaler`` for this: ``16-mixed`` (on CUDA) with its
usual dynamic scale, every other one with a scale held at exactly 1.0, which changes no value.
The skip is decided on the device (the fused Adam takes the inf flag as a tensor; other
optimizers on CUDA pay one host sync per step, GradScaler's own) and the flags are counted from
the one-step-late logs; after ``trainer.max_nonfinite_steps`` skipped steps in a row the run
stops with :class:`NonFiniteTraining`, keeping its checkpoints. Parameters are checked before
every checkpoint and validation, so neither is ever written from non-finite values.
"""

from __future__ import annotations

import contextlib
import gc
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio import distributed as D
from studio.config.experiment import ExperimentConfig
from studio.errors import NotCapturable, StudioError
from studio.io.saver import Saver
from studio.registry import get_registry, import_target
from studio.rundir import RunDir, periodic_name, periodic_step
from studio.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from studio.training.graphs import (
    StepGraphs,
    capture_blockers,
    make_capturable,
    plain_optimizer_state,
    plain_scheduler_state,
)
from studio.training.metrics import MetricsWriter
from studio.training.optim import build_optimizer, build_scheduler
from studio.training.signals import StopRequests
from studio.training.step_logs import NONFINITE, SkippedSteps, StepLogs, loggable
from studio.training.transfer import to_device


class TrainingTerminated(StudioError):
    """SIGTERM: a checkpoint was written and the run stopped (resume it later)."""

    exit_code = 143


class NonFiniteTraining(StudioError):
    """Too many steps in a row had a non-finite loss or gradient, or the parameters went
    non-finite: the run stopped without writing them (its last checkpoint is still good)."""


#: Eager steps after fit starts (or resumes) before steps are captured: the occupancy grid filled,
#: buffers sized, the optimizer's and scaler's state created, kernels autotuned.
GRAPH_WARMUP_STEPS = 10


def unit_scaler(device_type: str) -> torch.amp.GradScaler:
    """A GradScaler whose scale stays exactly 1.0 (growth and backoff factors 1.0): it scales
    nothing (times 1.0 is exact) but finds inf/NaN gradients and skips that optimizer step."""
    scaler = torch.amp.GradScaler(device_type, init_scale=1.0)
    scaler.set_growth_factor(1.0)  # the constructor insists on > 1 and < 1
    scaler.set_backoff_factor(1.0)
    return scaler


def _is_unit_scaler_state(state: dict[str, Any]) -> bool:
    return state.get("growth_factor") == 1.0 and state.get("backoff_factor") == 1.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _cleanup(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Trainer:
    def __init__(
        self,
        run: RunDir,
        experiment: ExperimentConfig,
        ctx: D.DistContext | None = None,
        *,
        resume: bool = False,
        log=None,
        label: str = "",
    ):
        self.run = run
        self.cfg = experiment
        self.ctx = ctx or D.context_from_env()
        self.resume = resume
        self.label = label
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.stop = StopRequests()
        self.global_step = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.skipped = SkippedSteps()
        self.good_checkpoint: tuple[Path, int] | None = None  # the last one written or loaded
        self.graphs: StepGraphs | None = None  # captured steps (trainer.cuda_graphs), else None
        self._steps_run = 0  # steps run since fit started: graphs wait GRAPH_WARMUP_STEPS

    # -- set-up ----------------------------------------------------------------------------------
    def setup(self, from_checkpoint: bool | None = None) -> None:
        """Seed, pick the device, join the process group, build data module and system.

        ``from_checkpoint`` (default: ``resume``): the system's state will come from this run's
        checkpoint (resume, test, export), so it starts nothing fresh (no geometry conversion, no
        ``system.weights``)."""
        cfg = self.cfg
        seed_everything(cfg.seed + self.ctx.rank)
        self.device = D.select_device(cfg.trainer.accelerator, self.ctx)
        D.init_process_group(self.ctx, self.device)
        registry = get_registry()
        system_cls = import_target(registry.get("method", cfg.method))
        self.data = registry.load("data", cfg.data_type)(
            cfg.data, device=self.device, config_path="data"
        )
        resumed = self.resume if from_checkpoint is None else from_checkpoint
        self.system = system_cls(cfg.system, resumed=resumed, device=self.device).to(self.device)
        self.system.saver = Saver(self.run.save, self.ctx)
        D.broadcast_module(self.system, self.ctx)
        self._record_conversion()
        self._configure_precision()

    def _record_conversion(self) -> None:
        """Say where a converted geometry came from and write it to ``configs/conversion.yaml``
        (particle 0's record, the other particles' under ``other_particles``)."""
        records = list(getattr(self.system, "conversions", None) or [])
        if not records and getattr(self.system, "conversion", None) is not None:
            records = [self.system.conversion]
        if not records or not self.ctx.is_main:
            return
        from studio.config.loading import dump_yaml
        from studio.rundir import write_text_atomic

        data = records[0].as_dict()
        if len(records) > 1:
            data["other_particles"] = [record.as_dict() for record in records[1:]]
        write_text_atomic(self.run.conversion_record, dump_yaml(data))
        for record in records:
            info = record.as_dict()
            threshold = info.get("threshold")
            level = (
                f", isosurface level {threshold:.6g} ({info['threshold_rule']})"
                if threshold
                else ""
            )
            which = f"Particle {info['particle']}'s geometry" if len(records) > 1 else "Geometry"
            self.log(
                f"{which} converted from {info['parent']} (step {info['step']}, "
                f"{info['source_geometry']}{level}); recorded in {self.run.conversion_record}."
            )

    def _configure_precision(self) -> None:
        precision = self.cfg.trainer.precision
        self.autocast_dtype: torch.dtype | None = None
        if precision == "16-mixed":
            if self.device.type == "cpu":
                if self.ctx.is_main:
                    self.log(
                        "precision 16-mixed on CPU runs in float32 (CPUs have no fast float16)."
                    )
            else:
                self.autocast_dtype = torch.float16
        elif precision == "bf16-mixed":
            self.autocast_dtype = torch.bfloat16
        if self.autocast_dtype is torch.float16:  # dynamic loss scale
            self.scaler = torch.amp.GradScaler(self.device.type)
        else:  # only the inf/NaN check
            self.scaler = unit_scaler(self.device.type)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # no cast cache in captured steps: a graph must not keep a weight cast from its capture
        cache = self.graphs is None
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=cache)

    def _set_step(self, step: int) -> None:
        self.global_step = step
        self.system.global_step = step

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, path: Path) -> None:
        """Gather every rank's RNG and data-stream state, then write on rank 0 (atomically).

        Refused (:class:`NonFiniteTraining`) when a parameter holds inf/NaN."""
        self._check_finite_parameters(f"writing {path.name}")
        rng = D.gather_objects(capture_rng_state(), self.ctx)
        data = D.gather_objects(self.data.state_dict(), self.ctx)
        if self.ctx.is_main:
            payload = {
                "global_step": self.global_step,
                "world_size": self.ctx.world_size,
                "state_dict": self.system.state_dict(),
                "objects": {
                    name: obj.trainable_state_dict()
                    for name, obj in self.system.trainable_objects().items()
                },
                "optimizer": (
                    plain_optimizer_state(self.optimizer.state_dict()) if self.optimizer else None
                ),
                "scheduler": (
                    plain_scheduler_state(self.scheduler.state_dict()) if self.scheduler else None
                ),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": rng,
                "data": data,
            }
            save_checkpoint(path, payload)
        D.barrier(self.ctx)
        self.good_checkpoint = (path, self.global_step)

    def _save_last(self) -> None:
        if self.cfg.checkpoint.save_last:
            self.save_checkpoint(self.run.last_ckpt)

    def _periodic_due(self) -> bool:
        every = self.cfg.checkpoint.every_n_train_steps
        return bool(every) and self.global_step % every == 0

    def _save_periodic(self) -> None:
        if not self._periodic_due():
            return
        self.save_checkpoint(self.run.ckpts / periodic_name(self.global_step))
        keep = self.cfg.checkpoint.save_top_k
        if keep > 0 and self.ctx.is_main:
            periodic = sorted(
                (p for p in self.run.checkpoints() if periodic_step(p) is not None),
                key=periodic_step,
            )
            for old in periodic[:-keep]:
                old.unlink(missing_ok=True)

    def load_weights(self) -> dict[str, Any]:
        """Load the run's newest complete checkpoint into the system; returns the checkpoint."""
        path = self.run.newest_checkpoint()
        if path is None:
            raise StudioError(
                f"{self.run.root} has no checkpoint (ckpts/ holds none): the run stopped before "
                f"its first one. Start it again with `studio run {self.run.parsed_config}`."
            )
        self.checkpoint_path = path
        checkpoint = load_checkpoint(path)  # CPU: RNG states must stay on the host
        self.system.load_state_dict(checkpoint["state_dict"])
        self._set_step(int(checkpoint["global_step"]))
        self.good_checkpoint = (path, self.global_step)
        self.system.do_update_step(0, self.global_step, on_load_weights=True)
        return checkpoint

    def _load_scaler(self, saved: dict[str, Any] | None) -> None:
        """Restore the scaler from a checkpoint's state of the same kind: dynamic (``16-mixed``)
        or unit scale. Anything else (another precision; ``None`` from a checkpoint written
        before every run had a scaler) leaves it fresh, as it was before."""
        if saved and _is_unit_scaler_state(saved) == (self.scaler.get_growth_factor() == 1.0):
            self.scaler.load_state_dict(saved)

    def _restore_objects(self, objects: dict[str, Any], saved: dict[str, Any]) -> None:
        missing = sorted(set(objects) - set(saved))
        if missing:
            raise StudioError(
                f"{self.checkpoint_path}: the checkpoint holds no trainable state for "
                f"system.{', system.'.join(missing)}, which trains parameters in this "
                "configuration. Resume with the configuration the run was started with."
            )
        for name, obj in objects.items():
            obj.load_trainable_state_dict(saved[name], where=f"system.{name}")

    # -- stages ----------------------------------------------------------------------------------
    def fit(self) -> None:
        """Train to ``trainer.max_steps`` (or until stopped); SIGTERM raises TrainingTerminated."""
        cfg = self.cfg
        system = self.system
        rng_state = None
        start = 0
        checkpoint: dict[str, Any] | None = None
        if self.resume:
            checkpoint = self.load_weights()
            start = self.global_step
            states = checkpoint.get("rng") or []
            if len(states) == self.ctx.world_size:
                rng_state = states[self.ctx.rank]
                data_states = checkpoint.get("data") or []
                if len(data_states) == self.ctx.world_size:
                    self.data.load_state_dict(data_states[self.ctx.rank])
            elif self.ctx.is_main:
                self.log(
                    f"The checkpoint was written by {len(states)} process(es), this run has "
                    f"{self.ctx.world_size}: random streams restart from the seed (not bit-exact)."
                )
                seed_everything(cfg.seed + self.ctx.rank + start)
        self._set_step(start)
        # Objects with trainable parameters (a guidance's LoRA) exist from here on: restore
        # their state, share rank 0's, then build the optimizer over them too.
        system.on_fit_start()
        objects = system.trainable_objects()
        if checkpoint is not None:
            self._restore_objects(objects, checkpoint.get("objects") or {})
        for obj in objects.values():
            for module in obj.trainable_modules().values():
                D.broadcast_module(module, self.ctx)
        self.optimizer = build_optimizer(system, system.cfg.optimizer)
        self.scheduler = build_scheduler(
            self.optimizer, system.cfg.scheduler, max_steps=self.cfg.trainer.max_steps
        )
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.params = params
        if checkpoint is not None:
            if checkpoint.get("optimizer"):
                self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.scheduler is not None and checkpoint.get("scheduler"):
                self.scheduler.load_state_dict(checkpoint["scheduler"])
            self._load_scaler(checkpoint.get("scaler"))
        self.graphs = self._graphed_steps()
        if rng_state is not None:
            restore_rng_state(rng_state)

        metrics = None
        if self.ctx.is_main:
            metrics = MetricsWriter(
                self.run.metrics,
                resume_from_step=start if self.resume else None,
                tensorboard_dir=self.run.root / "tb_logs" if cfg.trainer.tensorboard else None,
            )
        if cfg.trainer.num_sanity_val_steps > 0 and not self.resume:
            self.validate(limit=cfg.trainer.num_sanity_val_steps)

        progress = self._progress(start)
        system.train()
        stop_training = False
        try:
            with self.stop:
                pending: StepLogs | None = None  # logs are read back one step late
                while self.global_step < cfg.trainer.max_steps:
                    logs = self._train_step(params)
                    self._set_step(self.global_step + 1)
                    if pending is not None:
                        self._report(pending, metrics, progress)
                    pending = StepLogs(self.global_step, logs)
                    if progress is not None:
                        progress.update(1)
                    stop_training, terminate = D.any_rank(
                        [self.stop.stop_training, self.stop.terminate], self.ctx, self.device
                    )
                    validate = self.global_step % cfg.trainer.val_check_interval == 0
                    if terminate or validate or self._periodic_due():  # rows before checkpoints
                        self._report(pending, metrics, progress)
                        pending = None
                    if terminate:
                        self.save_checkpoint(self.run.last_ckpt)
                        raise TrainingTerminated(
                            f"Stopped by SIGTERM after step {self.global_step}; the checkpoint is "
                            f"{self.run.last_ckpt}. Continue with: studio resume {self.run.root}"
                        )
                    if validate:
                        self._check_finite_parameters("rendering the validation views")
                        self.validate()
                        self._save_last()
                    self._save_periodic()
                    if stop_training:
                        break
                if pending is not None:
                    self._report(pending, metrics, progress)
                self._save_last()
                if not self.cfg.checkpoint.save_last:  # checked there otherwise
                    self._check_finite_parameters("rendering the test views")
                if stop_training:  # said once the checkpoint is on disk
                    self.log(f"Training stopped by Ctrl+C after step {self.global_step}.")
                if self.skipped.total and self.ctx.is_main:
                    self.log(
                        f"{self.skipped.total} training step(s) had a non-finite loss or "
                        f"gradient and were skipped ({NONFINITE} = 1 in {self.run.metrics})."
                    )
        finally:
            if progress is not None:
                progress.close()
            if metrics is not None:
                metrics.close()

    def _report(self, logs: StepLogs, metrics: MetricsWriter | None, progress: Any) -> None:
        """Write a finished step's scalars to the metrics file and the progress bar; count a
        skipped step and stop after ``trainer.max_nonfinite_steps`` of them in a row."""
        values = logs.values()
        skipped = self.skipped.observe(logs.step, values)
        if metrics is not None and logs.step % self.cfg.trainer.log_every_n_steps == 0:
            metrics.log(logs.step, values)
        if progress is not None:
            progress.set_postfix(_short(values, self.skipped.total), refresh=False)
        limit = self.cfg.trainer.max_nonfinite_steps
        if skipped and limit and self.skipped.consecutive >= limit:
            raise NonFiniteTraining(self._nonfinite_message(logs.step))

    def _nonfinite_message(self, step: int) -> str:
        skipped, trainer = self.skipped, self.cfg.trainer
        if skipped.last_good_step is None:
            last = "No step since the run (re)started had a finite loss and gradients"
        else:
            losses = ", ".join(f"{k}={v:.6g}" for k, v in skipped.last_good_losses.items())
            last = f"The last step with finite ones was {skipped.last_good_step} ({losses})"
        if self.good_checkpoint is None:
            keep = (
                "No checkpoint was written yet: once fixed, start the run again with "
                f"`studio run {self.run.parsed_config}`"
            )
        else:
            path, at = self.good_checkpoint
            keep = (
                f"The last good checkpoint is {path} (step {at}, finite parameters): continue "
                f"from it with `studio resume {self.run.root} key=value ...` once fixed"
            )
        in_fp32 = trainer.precision in ("32", "32-true")
        fp32 = "" if in_fp32 else ", or train in float32 (trainer.precision=32)"
        return (
            f"Training stopped at step {step}: it and the {skipped.consecutive - 1} step(s) "
            f"before it (from step {skipped.streak_start}) had a non-finite (NaN/inf) loss or "
            f"gradient, so their updates were skipped, and trainer.max_nonfinite_steps is "
            f"{trainer.max_nonfinite_steps} ({skipped.total} skipped in all; {NONFINITE} in "
            f"{self.run.metrics}). {last}. Lower the learning rate (system.optimizer.args.lr and "
            "the lr of system.optimizer.params.*), check the system.loss.* weights and the "
            f"guidance scale (system.guidance.guidance_scale){fp32}. {keep}."
        )

    def _check_finite_parameters(self, doing: str) -> None:
        """Raise :class:`NonFiniteTraining` (on every rank) if a parameter holds inf/NaN.

        Skipped steps leave the parameters as they were, so this fires only when something other
        than the optimizer wrote them (one host sync: done before checkpoints and validation)."""
        named = list(self.system.named_parameters())
        for name, obj in self.system.trainable_objects().items():
            named += [(f"{name}.{key}", p) for key, p in obj.trainable_named_parameters()]
        named = [(n, p) for n, p in named if p.is_floating_point() and p.numel()]
        if not named:
            return
        finite = torch.stack([torch.isfinite(p.detach()).all().to(self.device) for _, p in named])
        flags = finite.tolist()
        (bad,) = D.any_rank([not all(flags)], self.ctx, self.device)
        if not bad:
            return
        names = [n for (n, _), ok in zip(named, flags, strict=True) if not ok]
        shown = ", ".join(f"system.{n}" for n in names[:5]) + (" ..." if len(names) > 5 else "")
        where = (
            f"the last good checkpoint is {self.good_checkpoint[0]} (step "
            f"{self.good_checkpoint[1]}): `studio resume {self.run.root}` continues from it"
            if self.good_checkpoint
            else "no checkpoint was written before"
        )
        raise NonFiniteTraining(
            f"At step {self.global_step}, before {doing}: {len(names)} parameter tensor(s) hold "
            f"NaN/inf ({shown}) although no update with a non-finite gradient was applied, so "
            "something other than the optimizer wrote them (the system's update_step or "
            "training_step, a custom initialisation or the loaded weights). Nothing was written; "
            f"{where}."
        )

    def _progress(self, start: int):
        if not (self.ctx.is_main and self.cfg.trainer.enable_progress_bar):
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.cfg.trainer.max_steps,
            initial=start,
            desc=f"{self.label} train" if self.label else "train",
            unit="it",
            dynamic_ncols=True,
            mininterval=0.5,
            file=sys.stderr,
        )

    def _next_batch(self) -> dict[str, Any]:
        """The data module is updated to the current step *before* it draws the batch."""
        self.data.do_update_step(0, self.global_step)
        return to_device(self.data.train_batch(), self.device)

    # -- captured steps --------------------------------------------------------------------------
    def _graphed_steps(self) -> StepGraphs | None:
        """The captured-step runner when this run's steps can be CUDA graphs, else None; either
        way one log line (rank 0) says which, and why not."""
        trainer = self.cfg.trainer
        if not trainer.cuda_graphs:
            reason = "trainer.cuda_graphs is false"
        else:
            reason = capture_blockers(
                self.device,
                self.optimizer,
                world_size=self.ctx.world_size,
                accumulate=trainer.accumulate_grad_batches,
            ) or "; ".join(self.system.graph_blockers())
        if reason:
            if self.ctx.is_main:
                self.log(f"Training steps run eagerly (not as CUDA graphs): {reason}.")
            return None
        make_capturable(self.optimizer, self.device)
        self.system.use_graph_weights(self.device)
        if self.ctx.is_main:
            self.log(
                f"Training steps are captured as CUDA graphs after {GRAPH_WARMUP_STEPS} eager "
                "steps (trainer.cuda_graphs=false runs them all eagerly)."
            )
        return StepGraphs(
            self._step_body, before_capture=lambda: self.optimizer.zero_grad(set_to_none=True)
        )

    def _stop_graphs(self, reason: str) -> None:
        if self.ctx.is_main:
            self.log(f"From step {self.global_step} on, training steps run eagerly: {reason}.")
        self.graphs = None

    def _step_body(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What a captured step runs: forward, backward and the optimizer step, on the device
        only (no host sync); returns the step's loggable tensors."""
        logs = self._forward_backward(batch, 1)
        logs[NONFINITE] = self._optimizer_step(self.params)
        return logs

    def _graphed_step(self) -> dict[str, Any]:
        """One training step with captured steps on: the host's part (batch, update step, the
        system's per-step draws), then the body, eagerly during the warm-up and else as a graph
        (eagerly too, with graphs switched off from then on, when it turns out not capturable)."""
        assert self.graphs is not None
        batch = self._next_batch()
        self.system.do_update_step(0, self.global_step)
        key = self.system.graph_key()
        if self._steps_run < GRAPH_WARMUP_STEPS:
            return self._step_body(batch)
        try:
            outputs = dict(self.graphs.run(key, batch))
        except NotCapturable as exc:  # before the step ran
            self._stop_graphs(str(exc))
            return self._step_body(batch)
        if self.graphs.broken:  # the step ran eagerly, its capture failed
            self._stop_graphs(self.graphs.broken)
        return outputs

    # -- steps -----------------------------------------------------------------------------------
    def _forward_backward(self, batch: dict[str, Any], accumulate: int) -> dict[str, Any]:
        """The system's training step on ``batch`` and its scaled backward (its share of
        ``accumulate``); returns its loggable scalars divided by ``accumulate``."""
        system = self.system
        with self.autocast():
            out = system.training_step(batch)
        if "loss" not in out:
            raise StudioError(
                f"{type(system).__name__}.training_step returned no 'loss' (keys: {list(out)})."
            )
        loss = out["loss"] / accumulate
        # A non-finite loss makes every gradient NaN (times NaN), even where its non-finite part
        # has no gradient of its own, so the scaler skips the step, on every rank (the gradients
        # are averaged); a finite one is multiplied by exactly 1.0. No host sync.
        self.scaler.scale(loss * (loss.detach() * 0 + 1)).backward()
        logs: dict[str, Any] = {}
        for key, value in out.items():
            scalar = loggable(value)
            if scalar is not None:
                logs[f"train/{key}"] = scalar / accumulate
        return logs

    def _optimizer_step(self, params: list[torch.nn.Parameter]) -> torch.Tensor | float:
        """Clip (when configured) and step through the scaler; returns the non-finite flag
        (1.0: the update was skipped, decided on the device)."""
        optimizer, scaler = self.optimizer, self.scaler
        if not any(p.grad is not None for p in params):  # nothing to check or update
            optimizer.step()
            return 0.0
        if self.cfg.trainer.gradient_clip_val:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, self.cfg.trainer.gradient_clip_val)
        scaler.step(optimizer)  # skipped (on the device) when a gradient is inf/NaN
        found = list(scaler._found_inf_per_device(optimizer).values())
        if len(found) > 1:  # gradients on several devices
            found = [torch.stack([f.to(found[0].device) for f in found]).amax()]
        scaler.update()
        return found[0]

    def _train_step(self, params: list[torch.nn.Parameter]) -> dict[str, Any]:
        """One optimizer step; returns its logged scalars (tensors stay on the device: no wait)."""
        system, optimizer = self.system, self.optimizer
        system.refresh_loss_weights()  # device-tensor weights (captured steps), else nothing
        logs: dict[str, Any] | None = None
        if self.graphs is not None:
            logs = self._graphed_step()
        if logs is None:
            accumulate = self.cfg.trainer.accumulate_grad_batches
            logs = {}
            for _ in range(accumulate):
                batch = self._next_batch()
                system.do_update_step(0, self.global_step)
                for name, value in self._forward_backward(batch, accumulate).items():
                    logs[name] = logs[name] + value if name in logs else value
            D.average_gradients(params, self.ctx)
            logs[NONFINITE] = self._optimizer_step(params)
        self._steps_run += 1
        optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        for name, value in system.lambdas().items():
            logs[f"train_params/{name}"] = value
        for group in optimizer.param_groups:  # a device tensor's value is read back with the logs
            logs[f"lr/{group.get('name', 'group')}"] = loggable(group["lr"])
        return logs

    def _eval_pass(
        self,
        batches,
        step_fn,
        cleanup: bool,
        limit: int | None = None,
        progress: str | None = None,
    ) -> None:
        """Run ``step_fn`` over the first ``limit`` (default all) batches, split across ranks.

        ``progress`` names a progress bar over the views (rank 0, on stderr, with ETA, when
        ``trainer.enable_progress_bar``); None draws none. Validation draws none: it runs while
        the training bar is on screen, and a second bar would break that bar's line (in logs and
        pipes, where a bar cannot be erased, every redraw of both would be kept)."""
        n = len(batches) if limit is None else min(limit, len(batches))
        was_training = self.system.training
        rng = capture_rng_state()  # evaluation must not shift the training random streams
        bar = None
        if progress and self.ctx.is_main and self.cfg.trainer.enable_progress_bar:
            from tqdm import tqdm

            bar = tqdm(
                total=n,
                desc=f"{self.label} {progress}" if self.label else progress,
                unit="view",
                dynamic_ncols=True,
                mininterval=0.5,
                file=sys.stderr,
            )
        self.system.eval()
        try:
            with torch.no_grad():
                for index in self.ctx.shard(n):
                    batch = to_device(batches[index], self.device)
                    for particle in self.system.particle_indices():
                        with self.system.use_particle(particle), self.autocast():
                            step_fn(batch, index)
                    if cleanup:
                        _cleanup(self.device)
                    if bar is not None:  # the other ranks render their views meanwhile
                        bar.update(min(self.ctx.world_size, n - bar.n))
        finally:
            if bar is not None:
                bar.close()
        self.system.saver.flush()
        D.barrier(self.ctx)
        self.system.train(was_training)
        restore_rng_state(rng)

    def validate(self, limit: int | None = None) -> None:
        self._eval_pass(
            self.data.val_batches(),
            self.system.validation_step,
            self.system.cfg.cleanup_after_validation_step,
            limit,
        )

    def test(self) -> list[Path]:
        """Render the test views; rank 0 encodes the video (one per particle) and returns their
        paths (other ranks: an empty list)."""
        self._eval_pass(
            self.data.test_batches(),
            self.system.test_step,
            self.system.cfg.cleanup_after_test_step,
            progress="test",
        )
        videos: list[Path] = []
        if self.ctx.is_main:
            for particle in self.system.particle_indices():
                with self.system.use_particle(particle):
                    video = self.system.on_test_end()
                videos += [video] if video else []
        D.barrier(self.ctx)
        return videos

    def export(self) -> list[Path]:
        """Run the system's exporter (for every particle, each into its own folder)."""
        written: list[Path] = []
        if self.ctx.is_main:
            for particle in self.system.particle_indices():
                with self.system.use_particle(particle):
                    written += self.system.export()
        D.barrier(self.ctx)
        return written

    def teardown(self) -> None:
        D.destroy_process_group()


def _short(logs: dict[str, float], skipped: int = 0) -> dict[str, str]:
    shown = {
        k.split("/", 1)[1]: v for k, v in logs.items() if k.startswith("train/") and k != NONFINITE
    }
    short = {k: f"{v:.4g}" for k, v in list(shown.items())[:4]}
    if skipped:
        short["skipped"] = str(skipped)
    return short
