"""The base class of every method's system.

A system owns its trainable parts (sub-modules), computes the loss of a training batch and renders
validation/test views. The trainer gives it ``global_step``, a :class:`~studio.io.saver.Saver`
and the device; the system never touches files or ranks directly.

Contract for subclasses:

* ``configure()`` builds sub-modules from ``self.cfg`` (no heavy models: those go in
  ``on_fit_start`` so ``studio test``/``export`` never load them).
* ``training_step(batch) -> dict``: must hold ``"loss"`` (a scalar tensor); every other scalar
  entry is logged as ``train/<key>``.
* ``validation_step(batch, index)`` / ``test_step(batch, index)``: queue images on ``self.saver``
  (validation: ``it<step>-<index>.png``; test: ``it<step>-test/<index>.png``).
* ``on_test_end()``: by default encodes the test frames into ``it<step>-test.mp4``.
* ``export() -> list[Path]``: write exports (default: the configured exporter, if any).

A system may hold several independent scenes ("particles", :mod:`studio.systems.lift3d`):
:meth:`use_particle` puts one in place for a block and sets :attr:`save_prefix` to its folder
(``particle-<k>/``), so the naming helpers below, the test video and the export land in it. The
trainer runs every validation/test view, ``on_test_end`` and ``export`` once per index of
:meth:`particle_indices`; a one-scene system has the index 0 and an empty prefix.

``resumed`` is True whenever the system's state will come from its own run's checkpoint (resume,
``studio test``, ``studio export``): then nothing that starts a fresh run happens in the
constructor (``system.weights`` loading, geometry conversion). Objects that own trainable
parameters (a guidance with a LoRA, see :meth:`studio.base.BaseObject.trainable_modules`) must be
built by ``on_fit_start``; the trainer builds the optimizer after it, so an optimizer group named
after the object's attribute (``guidance``) works.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional

import attrs
import torch

from studio.base import BaseModule
from studio.config.experiment import OptimizerConfig, SchedulerConfig
from studio.config.schedule import Scheduled, scheduled_value
from studio.errors import StudioError


def check_loss_keys(loss: dict[str, Any], terms: Optional[set[str]], path: str) -> None:
    """Every key of ``loss`` is ``lambda_<term>`` with ``term`` in ``terms`` (when known); else a
    :class:`ConfigError` naming the key and the closest valid one."""
    import difflib

    from studio.errors import ConfigError

    valid = sorted(f"lambda_{t}" for t in terms) if terms is not None else None
    for key in loss:
        if not key.startswith("lambda_"):
            raise ConfigError(
                f"{path}.{key}: loss weights are named lambda_<term> (e.g. {path}.lambda_sds)."
            )
        if valid is not None and key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" Did you mean {path}.{close[0]}?" if close else ""
            raise ConfigError(
                f"{path}.{key}: no loss term {key[len('lambda_') :]!r} in this system.{hint} "
                f"Its terms: {', '.join(valid) or 'none'}."
            )


class BaseSystem(BaseModule):
    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        loss: dict[str, Scheduled] = attrs.Factory(dict)
        """Loss weights ``lambda_<term>``, each a number or a schedule ``[start_step, start, end,
        end_step]`` (linear ramp between the steps); 0 switches a term off."""
        optimizer: OptimizerConfig = attrs.Factory(OptimizerConfig)
        """The optimizer and its parameter groups."""
        scheduler: Optional[SchedulerConfig] = None
        """The learning-rate scheduler, stepped after every optimizer step (None: constant)."""
        weights_ignore_modules: Optional[list[str]] = None
        """With ``weights``: sub-modules (e.g. ``background``) not loaded from that checkpoint."""
        cleanup_after_validation_step: bool = False
        """Collect garbage and empty the CUDA cache after each validation view (saves memory)."""
        cleanup_after_test_step: bool = False
        """Collect garbage and empty the CUDA cache after each test view (saves memory)."""
        exporter_type: str = ""
        """The registered exporter ``studio export`` runs (empty: none)."""
        exporter: dict[str, Any] = attrs.Factory(dict)
        """The exporter's config (keys of the ``exporter_type``'s config)."""
        export_after_fit: bool = False
        """When training reaches ``trainer.max_steps``, also run the exporter (what ``studio
        export`` does) after the test views; a failed export leaves the trained run intact."""

    config_path = "system"

    def __init__(
        self,
        cfg: Any = None,
        *,
        resumed: bool = False,
        device: Optional[torch.device] = None,
        **kwargs: Any,
    ):
        self.resumed = resumed
        self.global_step = 0
        self.saver: Any = None
        #: Where heavy set-up work (geometry conversion) runs; the trainer moves the system there.
        self.build_device = device if device is not None else torch.device("cpu")
        #: What a converted geometry came from (:class:`studio.geometry.convert.ConversionRecord`).
        self.conversion: Any = None
        #: Folder (with its trailing slash) under ``save/`` of the scene in place; see
        #: :meth:`use_particle`.
        self.save_prefix = ""
        #: ``system.loss`` weights as device tensors (:meth:`use_graph_weights`), else None.
        self._graph_weights: Optional[dict[str, torch.Tensor]] = None
        super().__init__(cfg, **kwargs)

    @classmethod
    def loss_terms(cls, cfg: Any) -> Optional[set[str]]:
        """The loss terms this system (with this config) weighs by ``loss.lambda_<term>``; None
        when it cannot say (then any ``lambda_*`` is accepted). Systems that know their terms
        (their regularisers plus their guidance's) override this, so a misspelt
        ``system.loss.lambda_sdss`` is refused before anything is created."""
        return None

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        check_loss_keys(cfg.loss, cls.loss_terms(cfg), f"{path}.loss")
        if cfg.weights:
            from studio.errors import ConfigError, RunDirError
            from studio.rundir import find_checkpoint

            try:
                find_checkpoint(cfg.weights, f"{path}.weights")
            except RunDirError as exc:
                raise ConfigError(str(exc)) from None

    def load_weights_from(self, spec: str) -> None:
        """``system.weights``: another run's weights, minus ``weights_ignore_modules``; the step
        state follows the checkpoint's step, the optimizer and the step start fresh. Skipped when
        the system is ``resumed`` (its own checkpoint wins)."""
        if self.resumed:
            return
        from studio.rundir import find_checkpoint
        from studio.training.checkpoint import load_checkpoint, select_weights

        key = f"{self.config_path}.weights"
        path, run = find_checkpoint(spec, key)
        checkpoint = load_checkpoint(path)
        picked, missing = select_weights(
            self.state_dict(),
            checkpoint["state_dict"],
            list(self.cfg.weights_ignore_modules or []),
            key,
            str(path),
        )
        self.load_state_dict(picked, strict=False)
        self.weights_not_loaded = missing
        if run is not None:
            self.warn_of_other_module_configs(run, sorted({k.split(".")[0] for k in picked}), key)
        self.do_update_step(0, int(checkpoint["global_step"]), on_load_weights=True)

    def warn_of_other_module_configs(self, run: Any, modules: list[str], key: str) -> None:
        """One warning listing how the loaded modules were configured otherwise in the source
        run (``run``): weights trained under another density bias, say, mean something else
        here. Nothing is refused: a difference may be intended."""
        import sys

        from studio.config.convert import structure, unstructure
        from studio.errors import StudioError
        from studio.training.checkpoint import loaded_module_differences

        source = dict((run.load_parsed() or {}).get("system") or {})
        here = unstructure(self.cfg)
        for module in modules:  # compared with their defaults filled in, where the types agree
            component = getattr(self, module, None)
            config_cls = getattr(type(component), "Config", None)
            same_type = source.get(f"{module}_type") == here.get(f"{module}_type")
            if config_cls is not None and isinstance(source.get(module), dict) and same_type:
                try:
                    source[module] = unstructure(structure(source[module], config_cls, module))
                except StudioError:
                    continue  # the source's own config no longer reads: compare it as written
                here[module] = unstructure(component.cfg)
        lines = loaded_module_differences(source, here, modules, self.config_path)
        if lines:
            shown = "; ".join(lines[:6]) + (
                f"; and {len(lines) - 6} more" if len(lines) > 6 else ""
            )
            print(
                f"warning: {key}={run.root}: the loaded modules ({', '.join(modules)}) were "
                f"configured otherwise there ({shown}). Their weights may not mean the same "
                "here: configure them as that run did, or skip them with "
                f"{self.config_path}.weights_ignore_modules.",
                file=sys.stderr,
                flush=True,
            )

    def trainable_objects(self) -> dict[str, Any]:
        r"""Attributes that are :class:`~studio.base.BaseObject`\ s owning trainable parameters
        (name -> object): optimized and checkpointed by the trainer with the system."""
        from studio.base import BaseObject

        return {
            name: value
            for name, value in vars(self).items()
            if isinstance(value, BaseObject) and value.trainable_parameters()
        }

    def particle_indices(self) -> range:
        """The indices of the scenes this system trains (one scene: ``range(1)``)."""
        return range(1)

    def use_particle(self, index: int) -> contextlib.AbstractContextManager:
        """A context in which scene ``index`` is in place, with :attr:`save_prefix` set to its
        folder; one scene: nothing changes. Loop ``for k in system.particle_indices(): with
        system.use_particle(k): ...``."""
        return contextlib.nullcontext()

    # -- schedules -------------------------------------------------------------------------------
    def C(self, value: object) -> float:  # noqa: N802 - the reference's name, used everywhere
        """A constant or schedule from the config, evaluated at the current step."""
        return scheduled_value(value, self.global_step)

    def lambdas(self) -> dict[str, float]:
        """Current value of every ``loss.lambda_*`` (logged as ``train_params/<name>``)."""
        return {name: self.C(value) for name, value in self.cfg.loss.items()}

    def loss_weight(self, key: str) -> float | torch.Tensor:
        """``system.loss.<key>`` at the current step: a number, or (once :meth:`use_graph_weights`
        ran) a 0-dim device tensor that :meth:`refresh_loss_weights` refills before every step,
        so a ramped weight changes without a new CUDA graph. Multiply losses by it; branch on
        ``self.C(...)`` instead (a graph is keyed by which terms are on)."""
        if self._graph_weights is not None and key in self._graph_weights:
            return self._graph_weights[key]
        return self.C(self.cfg.loss[key])

    def use_graph_weights(self, device: torch.device) -> None:
        """Hold every ``system.loss`` weight in a 0-dim float32 tensor on ``device`` (for captured
        steps: a graph reads the tensor, the host refills it)."""
        self._graph_weights = {
            key: torch.tensor(self.C(value), dtype=torch.float32, device=device)
            for key, value in self.cfg.loss.items()
        }

    def refresh_loss_weights(self) -> None:
        """Refill the weight tensors of :meth:`use_graph_weights` for the current step (outside
        any graph; the trainer calls it before every step, graphed or not). No-op without them."""
        for key, tensor in (self._graph_weights or {}).items():
            tensor.fill_(self.C(self.cfg.loss[key]))

    # -- captured steps --------------------------------------------------------------------------
    def graph_blockers(self) -> list[str]:
        """Why this system's training step cannot be captured as a CUDA graph: one clause per
        object (system, geometry, material, guidance, ...) that refuses; empty: it can."""
        from studio.base import iter_updateables

        return [r for obj in iter_updateables(self) if (r := obj.graph_blocker()) is not None]

    def graph_key(self) -> tuple:
        """The host state of the coming training step: which loss terms are on, and every
        object's :meth:`graph_state` (they may draw their per-step random choices here). Called
        before every step of a run whose steps are captured."""
        from studio.base import iter_updateables

        on = tuple(sorted(k for k, v in self.cfg.loss.items() if self.C(v) > 0))
        states = tuple((type(obj).__name__, obj.graph_state()) for obj in iter_updateables(self))
        return (on, states)

    # -- lifecycle -------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Before the first training step (after a resume's state is loaded): load guidance here."""

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Any], index: int) -> None:
        raise NotImplementedError

    def test_step(self, batch: dict[str, Any], index: int) -> None:
        raise NotImplementedError

    def on_test_end(self) -> Optional[Path]:
        name = f"{self.save_prefix}it{self.global_step}-test"
        return self.saver.video_from_frames(name, f"{name}.mp4")

    def export(self) -> list[Path]:
        """Run the configured exporter into ``save/<save_prefix>it<step>-export/`` (atomically)."""
        if not self.cfg.exporter_type:
            raise StudioError(
                f"This run's system ({type(self).__name__}) has no exporter configured "
                f"(system.exporter_type is empty). Set one, e.g. `studio export RUN_DIR "
                f"system.exporter_type=mesh-exporter`, or use `studio test RUN_DIR` for the video."
            )
        from studio.exporters.base import export_atomically
        from studio.registry import get_registry

        cls = get_registry().load("exporter", self.cfg.exporter_type)
        exporter = cls(self.cfg.exporter, device=self.device)
        target = self.saver.save_dir / f"{self.save_prefix}it{self.global_step}-export"
        return export_atomically(exporter, self, target)

    # -- naming helpers --------------------------------------------------------------------------
    def validation_image_name(self, index: int) -> str:
        return f"{self.save_prefix}it{self.global_step}-{index}.png"

    def test_image_name(self, index: int) -> str:
        return f"{self.save_prefix}it{self.global_step}-test/{index}.png"
