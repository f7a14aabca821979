"""Loading VSD's two diffusion models: the frozen pretrained pipeline and the LoRA's base UNet.

* The pretrained model loads like ``stable-diffusion``'s (UNet and VAE, frozen, in the weights
  dtype, with the config's VRAM options) with a DDPM scheduler built from its scheduler config.
* The LoRA's base (``pretrained_model_name_or_path_lora``) contributes only its UNet and its
  scheduler config (the pretrained VAE encodes for both). When both paths are the same string the
  one UNet serves both (``single_model``): the pretrained pass then runs with the adapters and
  the camera embedding switched off (:func:`~.lora.pretrained_view`).

Both models must share the latent channels, the text-embedding width and the number of training
timesteps (one prompt processor and one noise draw feed both); their prediction types may differ
(epsilon or v-prediction, converted in :mod:`.vsd`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from studio.api import ConfigError
from studio_dreamfusion.guidance.loading import MemoryOptions, freeze
from studio_dreamfusion.guidance.sds import DiffusionModels
from studio_dreamfusion.guidance.stable_diffusion import load_frozen_sd_pipeline
from studio_dreamfusion.pretrained import diffusers_dtype_kwargs, resolve_pretrained
from studio_prolificdreamer.guidance.vsd import check_prediction_type


@dataclass
class VSDModels(DiffusionModels):
    """:class:`DiffusionModels` (the pretrained pipe, UNet, VAE, scheduler) plus the LoRA's base
    UNet and scheduler; a plain holder, so no weight joins a system's parameters."""

    unet_lora: Any = None
    scheduler_lora: Any = None
    single_model: bool = False


def load_pretrained(
    name_or_path: str,
    key: str,
    dtype: torch.dtype,
    options: MemoryOptions,
    device: torch.device,
) -> DiffusionModels:
    """The frozen pretrained SD pipeline at config ``key`` (UNet + VAE) with a DDPM scheduler."""
    from diffusers import DDPMScheduler

    pipe, path = load_frozen_sd_pipeline(name_or_path, key, dtype, options, device)
    scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    check_prediction_type(scheduler.config.prediction_type, key)
    return DiffusionModels(pipe=pipe, unet=pipe.unet, vae=pipe.vae, scheduler=scheduler)


def load_lora_base(
    name_or_path: str, key: str, dtype: torch.dtype, device: torch.device
) -> tuple[Any, Any]:
    """``(unet, scheduler)`` of the LoRA's base model at config ``key``: the UNet frozen, in
    ``dtype`` on ``device``; a DDPM scheduler from its scheduler config."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    path = resolve_pretrained(name_or_path, subfolders=["unet", "scheduler"], config_key=key)
    unet = UNet2DConditionModel.from_pretrained(
        path, subfolder="unet", **diffusers_dtype_kwargs(dtype)
    )
    freeze(unet)
    unet.to(device)
    scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    check_prediction_type(scheduler.config.prediction_type, key)
    return unet, scheduler


def check_compatible(
    pretrained: DiffusionModels, unet_lora: Any, scheduler_lora: Any, key: str
) -> None:
    """Raise :class:`ConfigError` (naming config ``key``) unless the LoRA's base model takes the
    pretrained model's latents, text embeddings and timesteps."""
    ours, theirs = pretrained.unet.config, unet_lora.config
    pairs = {
        "latent channels (in_channels)": (ours.in_channels, theirs.in_channels),
        "text-embedding width (cross_attention_dim)": (
            ours.cross_attention_dim,
            theirs.cross_attention_dim,
        ),
        "training timesteps (num_train_timesteps)": (
            pretrained.scheduler.config.num_train_timesteps,
            scheduler_lora.config.num_train_timesteps,
        ),
    }
    for what, (mine, other) in pairs.items():
        if mine != other:
            raise ConfigError(
                f"{key}: the LoRA's base model has {other} {what} but the pretrained model has "
                f"{mine}; both must be the same Stable Diffusion family (e.g. "
                f"stabilityai/stable-diffusion-2-1-base with stabilityai/stable-diffusion-2-1): "
                f"set {key} to such a model, or to the pretrained model's own path."
            )


def load_vsd_models(
    pretrained_path: str,
    lora_path: str,
    config_path: str,
    dtype: torch.dtype,
    options: MemoryOptions,
    device: torch.device,
) -> VSDModels:
    """Both models of the guidance at ``config_path`` (see the module doc)."""
    base = load_pretrained(
        pretrained_path, f"{config_path}.pretrained_model_name_or_path", dtype, options, device
    )
    single = lora_path == pretrained_path
    if single:
        unet_lora, scheduler_lora = base.unet, base.scheduler
    else:
        key = f"{config_path}.pretrained_model_name_or_path_lora"
        unet_lora, scheduler_lora = load_lora_base(lora_path, key, dtype, device)
        check_compatible(base, unet_lora, scheduler_lora, key)
    return VSDModels(
        pipe=base.pipe,
        unet=base.unet,
        vae=base.vae,
        scheduler=base.scheduler,
        unet_lora=unet_lora,
        scheduler_lora=scheduler_lora,
        single_model=single,
    )
