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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import attrs
import torch

from studio.base import BaseModule
from studio.config.experiment import OptimizerConfig, SchedulerConfig
from studio.config.schedule import Scheduled, scheduled_value
from studio.errors import StudioError


class BaseSystem(BaseModule):
    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        loss: dict[str, Scheduled] = attrs.Factory(dict)
        optimizer: OptimizerConfig = attrs.Factory(OptimizerConfig)
        scheduler: Optional[SchedulerConfig] = None
        weights_ignore_modules: Optional[list[str]] = None
        cleanup_after_validation_step: bool = False
        cleanup_after_test_step: bool = False
        exporter_type: str = ""
        exporter: dict[str, Any] = attrs.Factory(dict)

    config_path = "system"

    def __init__(self, cfg: Any = None, *, resumed: bool = False, **kwargs: Any):
        self.resumed = resumed
        self.global_step = 0
        self.saver: Any = None
        super().__init__(cfg, **kwargs)

    # -- schedules -------------------------------------------------------------------------------
    def C(self, value: object) -> float:  # noqa: N802 - the reference's name, used everywhere
        """A constant or schedule from the config, evaluated at the current step."""
        return scheduled_value(value, self.global_step)

    def lambdas(self) -> dict[str, float]:
        """Current value of every ``loss.lambda_*`` (logged as ``train_params/<name>``)."""
        return {name: self.C(value) for name, value in self.cfg.loss.items()}

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
        return self.saver.video_from_frames(
            f"it{self.global_step}-test", f"it{self.global_step}-test.mp4"
        )

    def export(self) -> list[Path]:
        """Run the configured exporter into ``save/it<step>-export/`` (atomically)."""
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
        target = self.saver.save_dir / f"it{self.global_step}-export"
        return export_atomically(exporter, self, target)

    # -- naming helpers --------------------------------------------------------------------------
    def validation_image_name(self, index: int) -> str:
        return f"it{self.global_step}-{index}.png"

    def test_image_name(self, index: int) -> str:
        return f"it{self.global_step}-test/{index}.png"
