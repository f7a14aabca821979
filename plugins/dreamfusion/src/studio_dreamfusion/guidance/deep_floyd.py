"""``deep-floyd`` guidance: pixel-space SDS with DeepFloyd IF stage I (reference §4.7.2).

Images ``[B, H, W, 3]`` in [0, 1] are resized (bilinear) to the UNet's resolution (64 for
IF-I-XL) and mapped to [-1, 1]; these pixels are ``z`` of :mod:`studio_dreamfusion.guidance.sds`.
The UNet predicts 6 channels: the first 3 are epsilon, the rest (learned variance) is dropped.
The scheduler is the pipeline's own (DDPM). There is no latent space: ``rgb_as_latents=True`` is
an error.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import torch
import torch.nn.functional as F

from studio.api import ConfigError
from studio_dreamfusion.guidance.diffusers_base import DiffusersGuidance
from studio_dreamfusion.guidance.loading import (
    check_memory_options,
    freeze,
    place_pipeline,
    weights_dtype,
)
from studio_dreamfusion.guidance.sds import DiffusionModels
from studio_dreamfusion.pretrained import (
    diffusers_dtype_kwargs,
    pick_variant,
    resolve_pretrained,
)
from studio_dreamfusion.quiet import quiet_loading


class DeepFloydGuidance(DiffusersGuidance):
    @attrs.define(kw_only=True)
    class Config(DiffusersGuidance.Config):
        pretrained_model_name_or_path: str = "DeepFloyd/IF-I-XL-v1.0"
        """DeepFloyd IF stage-I model id or local folder (UNet and scheduler are loaded)."""
        guidance_scale: float = 20.0
        """Classifier-free guidance scale ``s`` of ``eps_c + s * (eps_c - eps_u)`` (the
        reference's form: diffusers' scale ``s + 1``)."""
        enable_channels_last_format: bool = True
        """Store the UNet weights in ``channels_last`` memory format."""

    cfg: Config

    @quiet_loading()
    def load_models(self) -> DiffusionModels:
        from diffusers import IFPipeline

        options = self.memory_options()
        check_memory_options(options, self.device, self.config_path)
        self.weights_dtype = weights_dtype(self.cfg.half_precision_weights, self.device)
        path = resolve_pretrained(
            self.cfg.pretrained_model_name_or_path,
            subfolders=["unet", "scheduler"],
            config_key=f"{self.config_path}.pretrained_model_name_or_path",
        )
        extra: dict[str, Any] = {}
        variant = pick_variant(path / "unet", self.weights_dtype)
        if variant:
            extra["variant"] = variant
        pipe = IFPipeline.from_pretrained(
            path,
            tokenizer=None,
            text_encoder=None,
            safety_checker=None,
            watermarker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **diffusers_dtype_kwargs(self.weights_dtype),
            **extra,
        )
        freeze(pipe.unet)
        place_pipeline(pipe, pipe.unet, options, self.device)
        self.image_size = int(pipe.unet.config.sample_size)
        return DiffusionModels(pipe=pipe, unet=pipe.unet, scheduler=pipe.scheduler)

    def __call__(
        self,
        rgb: torch.Tensor,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        rgb_as_latents: bool = False,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """SDS loss of renders ``rgb`` ``[B, H, W, 3]`` in [0, 1] (see the module docstring)."""
        if rgb_as_latents:
            raise ConfigError(
                "The deep-floyd guidance works on RGB pixels and has no latent space, but it was "
                "called with rgb_as_latents=True; render RGB (e.g. system.mode=rgb in sds-2d) or "
                "use system.guidance_type=stable-diffusion for latent renders."
            )
        size = self.image_size
        images = rgb.permute(0, 3, 1, 2)
        pixels = F.interpolate(images, (size, size), mode="bilinear", align_corners=False)
        return self.compute_sds(
            pixels * 2.0 - 1.0,
            prompt_utils,
            elevation,
            azimuth,
            camera_distances,
            noise=noise,
            timesteps=timesteps,
        )
