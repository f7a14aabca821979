"""The config and VRAM switches shared by guidances that load a diffusers pipeline."""

from __future__ import annotations

from typing import Literal

import attrs
import torch

from studio_dreamfusion.guidance.loading import MemoryOptions
from studio_dreamfusion.guidance.sds import ScoreDistillationGuidance

CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]


class DiffusersGuidance(ScoreDistillationGuidance):
    """An SDS guidance on a pretrained diffusers pipeline (see :mod:`.loading` for the options)."""

    @attrs.define(kw_only=True)
    class Config(ScoreDistillationGuidance.Config):
        pretrained_model_name_or_path: str = ""
        half_precision_weights: bool = True
        enable_memory_efficient_attention: bool = False
        enable_sequential_cpu_offload: bool = False
        enable_attention_slicing: bool = False
        enable_channels_last_format: bool = False
        compile: CompileMode = "none"

    def memory_options(self) -> MemoryOptions:
        """The config's VRAM and speed switches (token merging only where the config has it)."""
        cfg = self.cfg
        return MemoryOptions(
            memory_efficient_attention=cfg.enable_memory_efficient_attention,
            sequential_cpu_offload=cfg.enable_sequential_cpu_offload,
            attention_slicing=cfg.enable_attention_slicing,
            channels_last=cfg.enable_channels_last_format,
            compile=cfg.compile,
            token_merging=getattr(cfg, "token_merging", False),
            token_merging_params=dict(getattr(cfg, "token_merging_params", {})),
        )

    def predict_noise(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, text_embeddings: torch.Tensor
    ) -> torch.Tensor:
        """The UNet's epsilon in the weights dtype with autocast off, cast back to ``noisy``'s
        dtype; only the first ``C`` output channels (IF's UNet adds ``C`` variance channels)."""
        with torch.autocast(self.device.type, enabled=False):
            out = self.models.unet(
                noisy.to(self.weights_dtype),
                timesteps,
                encoder_hidden_states=text_embeddings.to(self.weights_dtype),
            ).sample
        return out[:, : noisy.shape[1]].to(noisy.dtype)
