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
        """Hugging Face model id or local folder of the diffusion pipeline."""
        half_precision_weights: bool = True
        """Run the frozen model in float16 on CUDA (float32 on the CPU either way)."""
        enable_memory_efficient_attention: bool = False
        """xformers attention on torch < 2 (torch >= 2 already uses fused attention: no-op)."""
        enable_sequential_cpu_offload: bool = False
        """Keep the weights on the CPU and stream them to the GPU layer by layer (least memory,
        slowest; needs accelerate; ignored on the CPU)."""
        enable_attention_slicing: bool = False
        """Compute attention one slice at a time (less memory, slower)."""
        enable_channels_last_format: bool = False
        """Store the UNet weights in ``channels_last`` memory format."""
        compile: CompileMode = "none"
        """``torch.compile`` mode for the UNet (the VAE encoder gets ``default``), CUDA only;
        ``none``: eager; the first steps are slow while it compiles."""

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
