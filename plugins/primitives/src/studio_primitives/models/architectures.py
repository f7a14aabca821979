"""The two primitives pipelines, in the exact component layout of the real models.

* :func:`build_sd_form` -- a ``StableDiffusionPipeline``: word-level CLIP tokenizer and
  ``CLIPTextModel``, ``UNet2DConditionModel`` on 4-channel latents, ``AutoencoderKL`` and a
  ``DDIMScheduler`` with Stable Diffusion's betas. With the defaults the VAE halves the resolution
  (two blocks, scale factor 2): 64x64 images <-> 32x32 latents; the ``stable-diffusion`` guidance
  derives its input size from ``unet.sample_size * 2 ** (len(vae.block_out_channels) - 1)``, so it
  needs no extra option.
* :func:`build_if_form` -- an ``IFPipeline`` (stage I): word-level T5 tokenizer and
  ``T5EncoderModel`` (v1.1's gated-GELU), a pixel ``UNet2DConditionModel`` with 6 output channels
  (epsilon + learned variance range) and IF's ``DDPMScheduler``. Its blocks are Stable Diffusion's
  transformer cross-attention blocks rather than IF's ``SimpleCrossAttn`` (keys of the image and
  the text under one softmax, plus pooled-text time embedding): trained the same way, that
  UNet ignored the prompt (classifier accuracy of its samples 0.04 after 3,741 steps, the
  sample grid showing random shapes and colours); the guidance loads either unchanged.

All weights are random (seeded by the caller's RNG); :mod:`studio_primitives.training.train`
trains them.
The default configs keep both pipelines together under :data:`SIZE_BUDGET_BYTES` as fp16.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from studio_primitives.models.vocabulary import MAX_LENGTH, build_clip_tokenizer, build_t5_tokenizer

#: Both pipelines' weights together, stored as fp16, must fit in this many bytes.
SIZE_BUDGET_BYTES = 25 * 1024 * 1024


@attrs.define(kw_only=True)
class SDFormConfig:
    """Sizes of the Stable-Diffusion-form pipeline (images ``image_size``, latents half that)."""

    image_size: int = 64
    text_dim: int = 128
    text_layers: int = 2
    text_heads: int = 4
    unet_channels: tuple[int, ...] = (64, 96, 128)
    unet_attention_head_dim: int = 8
    vae_channels: tuple[int, ...] = (32, 64)
    norm_groups: int = 16
    vae_norm_groups: int = 16

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)


@attrs.define(kw_only=True)
class IFFormConfig:
    """Sizes of the DeepFloyd-IF-form (stage I) pipeline (pixels ``image_size``)."""

    image_size: int = 64
    text_dim: int = 128
    text_layers: int = 2
    text_heads: int = 4
    #: T5's feed-forward kind: ``"gated-gelu"`` is T5 v1.1's (IF's text encoder), ``"relu"`` v1's.
    text_feed_forward: str = "gated-gelu"
    #: Four levels, 64 -> 8 pixels, attention at 16x16 and 8x8 only: the shipped model. The
    #: first design, (48, 96, 112) with attention from 32x32 on, trained 6x slower per step (CPU)
    #: and reached 0.50 sample accuracy after ~4,900 steps against this one's 0.57 after 2,700
    #: (both scored with the sampler that still clipped its clean-image estimate).
    unet_channels: tuple[int, ...] = (32, 64, 96, 128)
    unet_attention_head_dim: int = 16
    #: Leading UNet levels without attention (the full-resolution ones are the costly ones).
    plain_levels: int = 2
    norm_groups: int = 16


def sd_scheduler() -> Any:
    """A ``DDIMScheduler`` with Stable Diffusion's (v1/2-base) training betas."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def if_scheduler() -> Any:
    """A ``DDPMScheduler`` with DeepFloyd IF stage I's settings (cosine betas, learned range)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        beta_start=0.0001,
        beta_end=0.02,
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.0,
        clip_sample=True,
        clip_sample_range=1.0,
        prediction_type="epsilon",
        variance_type="learned_range",
    )


def _blocks(
    n: int, cross: str, plain: str, plain_levels: int = 1
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Down and up block types: the first ``plain_levels`` levels plain, the others with
    attention (the up path mirrors the down path)."""
    down = (plain.replace("X", "Down"),) * plain_levels + (cross.replace("X", "Down"),) * (
        n - plain_levels
    )
    up = (cross.replace("X", "Up"),) * (n - plain_levels) + (
        plain.replace("X", "Up"),
    ) * plain_levels
    return down, up


def build_sd_form(config: SDFormConfig | None = None) -> Any:
    """A random ``StableDiffusionPipeline`` of ``config`` (default :class:`SDFormConfig`)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = config or SDFormConfig()
    tokenizer = build_clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_dim,
            intermediate_size=cfg.text_dim * 2,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    down, up = _blocks(len(cfg.unet_channels), "CrossAttnXBlock2D", "XBlock2D")
    unet = UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=tuple(cfg.unet_channels),
        norm_num_groups=cfg.norm_groups,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cfg.text_dim,
        attention_head_dim=cfg.unet_attention_head_dim,
    )
    n = len(cfg.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_channels),
        norm_num_groups=cfg.vae_norm_groups,
        latent_channels=4,
        layers_per_block=1,
        sample_size=cfg.image_size,
    )
    init_small_posterior_variance(vae)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


#: Initial log-variance of the VAE posterior (std ~0.007): samples are close to the means, as with
#: a trained Stable Diffusion VAE, instead of the unit noise of a fresh ``AutoencoderKL``.
INITIAL_POSTERIOR_LOGVAR = -10.0


def init_small_posterior_variance(vae: nn.Module) -> None:
    """Set the bias of the log-variance half of ``vae.quant_conv`` to
    :data:`INITIAL_POSTERIOR_LOGVAR` (the KL weight used in training is too small to move it)."""
    latent_channels = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.bias[latent_channels:] = INITIAL_POSTERIOR_LOGVAR


def build_if_form(config: IFFormConfig | None = None) -> Any:
    """A random stage-I ``IFPipeline`` of ``config`` (default :class:`IFFormConfig`)."""
    from diffusers import IFPipeline, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    cfg = config or IFFormConfig()
    tokenizer = build_t5_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=cfg.text_dim,
            d_kv=cfg.text_dim // cfg.text_heads,
            d_ff=cfg.text_dim * 2,
            num_layers=cfg.text_layers,
            num_heads=cfg.text_heads,
            relative_attention_num_buckets=16,
            dropout_rate=0.0,
            feed_forward_proj=cfg.text_feed_forward,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    down, up = _blocks(len(cfg.unet_channels), "CrossAttnXBlock2D", "XBlock2D", cfg.plain_levels)
    unet = UNet2DConditionModel(
        sample_size=cfg.image_size,
        in_channels=3,
        out_channels=6,
        layers_per_block=1,
        block_out_channels=tuple(cfg.unet_channels),
        norm_num_groups=cfg.norm_groups,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cfg.text_dim,
        attention_head_dim=cfg.unet_attention_head_dim,
        resnet_time_scale_shift="scale_shift",
    )
    return IFPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=if_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )


def trainable_modules(pipe: Any) -> dict[str, nn.Module]:
    """The pipeline's weight-carrying components by name (``text_encoder``, ``unet``, ``vae``)."""
    names = ("text_encoder", "unet", "vae")
    return {n: getattr(pipe, n) for n in names if getattr(pipe, n, None) is not None}


def parameter_count(pipe: Any) -> int:
    """Parameters of all of the pipeline's models (buffers are not counted)."""
    return sum(p.numel() for m in trainable_modules(pipe).values() for p in m.parameters())


def fp16_bytes(pipe: Any) -> int:
    """Bytes of the pipeline's weights stored as fp16 (2 per parameter)."""
    return 2 * parameter_count(pipe)
