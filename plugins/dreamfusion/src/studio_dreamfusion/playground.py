"""``sds-2d``: the 2D playground. Optimise one image with a guidance, to debug the guidance fast.

The image (``mode: rgb``: ``[1, H, W, 3]`` uniform in [0, 1]; ``mode: latent``: ``[1, H, W, 4]``
standard normal, passed with ``rgb_as_latents=True``) is the only trainable parameter. Every step
calls the configured guidance with a fixed frontal view (elevation 0, azimuth 0, distance 1) and
minimises ``lambda_sds * loss_sds``. Every ``frame_interval`` steps the current image (decoded
through the guidance's VAE in latent mode) is written to ``save/frames/<step>.png``; the test stage
writes the final image and encodes the frames into ``save/it<step>-progress.mp4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import attrs
import numpy as np
import torch
from torch import nn

from studio.api import BaseSystem, Batch, ConfigError, DataModule, build_guidance, rgb
from studio_dreamfusion.system import weighted_guidance_losses


class FixedViewDataModule(DataModule):
    """Every batch is the same frontal view; validation and test have one batch each."""

    @attrs.define(kw_only=True)
    class Config:
        elevation: float = 0.0
        """Elevation of the fixed view in degrees (selects the view-dependent prompt)."""
        azimuth: float = 0.0
        """Azimuth of the fixed view in degrees (selects the view-dependent prompt)."""
        camera_distance: float = 1.0
        """Camera distance of the fixed view (passed to the guidance)."""

    config_path = "data"

    def _batch(self) -> Batch:
        cfg = self.cfg
        return {
            "elevation": torch.tensor([cfg.elevation]),
            "azimuth": torch.tensor([cfg.azimuth]),
            "camera_distances": torch.tensor([cfg.camera_distance]),
        }

    def train_batch(self) -> Batch:
        return self._batch()

    def val_batches(self) -> list[Batch]:
        return [self._batch()]

    def test_batches(self) -> list[Batch]:
        return [self._batch()]


class Playground2DSystem(BaseSystem):
    @attrs.define(kw_only=True)
    class Config(BaseSystem.Config):
        mode: Literal["rgb", "latent"] = "rgb"
        """What is optimised: ``rgb`` (an image in [0, 1]) or ``latent`` (4-channel latents
        decoded by the guidance's VAE)."""
        height: int = 64
        """Height of the optimised image or latent grid (positive)."""
        width: int = 64
        """Width of the optimised image or latent grid (positive)."""
        frame_interval: int = 5
        """Save the current image to ``save/frames/`` every this many steps (positive)."""
        guidance_type: str = ""
        """The registered guidance to debug (e.g. ``stable-diffusion``)."""
        guidance: dict[str, Any] = attrs.Factory(dict)
        """The guidance's config (keys of the ``guidance_type``'s config)."""
        prompt_processor_type: str = ""
        """The registered prompt processor (e.g. ``stable-diffusion``)."""
        prompt_processor: dict[str, Any] = attrs.Factory(dict)
        """The prompt processor's config (keys of the ``prompt_processor_type``'s config)."""

    def configure(self) -> None:
        cfg = self.cfg
        for name in ("height", "width", "frame_interval"):
            if getattr(cfg, name) <= 0:
                raise ConfigError(
                    f"system.{name} must be positive, got {getattr(cfg, name)}; e.g. "
                    f"system.{name}=64."
                )
        if cfg.mode == "rgb":
            init = torch.rand(1, cfg.height, cfg.width, 3)
        else:
            init = torch.randn(1, cfg.height, cfg.width, 4)
        self.image = nn.Parameter(init)
        self.guidance: Optional[Any] = None
        self.prompt_processor: Optional[Any] = None

    def load_guidance(self) -> None:
        cfg = self.cfg
        if not cfg.guidance_type or not cfg.prompt_processor_type:
            raise ConfigError(
                "sds-2d needs a guidance and a prompt processor: set system.guidance_type and "
                "system.prompt_processor_type (e.g. stable-diffusion)."
            )
        self.prompt_processor, self.guidance = build_guidance(cfg, self.device)
        if cfg.mode == "latent" and not hasattr(self.guidance, "decode_latents"):
            raise ConfigError(
                f"system.mode=latent but the {cfg.guidance_type!r} guidance has no latent space "
                f"(no decode_latents); use system.mode=rgb."
            )
        self.prompt_utils = self.prompt_processor()

    def on_fit_start(self) -> None:
        self.load_guidance()

    def current_image(self) -> np.ndarray:
        """The image as uint8 ``[H, W, 3]`` (latents decoded through the guidance's VAE)."""
        with torch.no_grad():
            if self.cfg.mode == "rgb":
                img = self.image[0].clamp(0.0, 1.0)
            else:
                if self.guidance is None:
                    self.load_guidance()
                latents = self.image.permute(0, 3, 1, 2)
                img = self.guidance.decode_latents(latents.to(self.device))[0]
        return rgb(img.float())

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.guidance(
            self.image,
            self.prompt_utils,
            **batch,
            rgb_as_latents=self.cfg.mode == "latent",
        )
        loss, logged = weighted_guidance_losses(out, self.loss_weight, self.cfg.loss)
        if self.global_step % self.cfg.frame_interval == 0:
            self.saver.image(f"frames/{self.global_step}.png", self.current_image())
        return {"loss": loss, **logged}

    def validation_step(self, batch: dict[str, Any], index: int) -> None:
        self.saver.image(self.validation_image_name(index), self.current_image())

    def test_step(self, batch: dict[str, Any], index: int) -> None:
        self.saver.image(self.test_image_name(index), self.current_image())

    def on_test_end(self) -> Optional[Path]:
        return self.saver.video_from_frames("frames", f"it{self.global_step}-progress.mp4", fps=10)
