"""Tiny random Stable Diffusion and DeepFloyd IF pipelines, saved as real pipeline folders.

The folders have the layout of the hub checkpoints (``model_index.json`` plus one subfolder per
component) so the production loading code (``from_pretrained``) reads them unchanged. All weights
are random (seeded) and the whole folder is a few hundred KB; renders are 32x32.

* :func:`make_tiny_sd` -- CLIP text encoder + CLIP BPE tokenizer (tiny vocab.json/merges.txt),
  conditional UNet (4 latent channels, 16x16 latents), AutoencoderKL (scale factor 2, so 32x32
  images), DDIM scheduler with Stable Diffusion's beta schedule.
* :func:`make_tiny_clip` -- a CLIPModel (text + vision towers, 32x32 images) with the same tiny
  CLIP tokenizer and, optionally, a CLIPImageProcessor config, for CLIP R-precision.
* :func:`make_tiny_if` -- T5 encoder + a Unigram T5 tokenizer built in code, pixel UNet with 6
  output channels (epsilon + learned variance) on 16x16 images, DDPM scheduler with IF's settings.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import torch

#: Text width of both tiny text encoders (the UNets' cross-attention input width).
TEXT_DIM = 32
#: Token sequence length (the reference pads every prompt to 77 tokens).
MAX_LENGTH = 77
#: Side of the RGB renders the tiny models expect (SD: 16x16 latents x VAE factor 2; IF: resized).
RENDER_SIZE = 32

_WORDS = [
    "a",
    "the",
    "of",
    "view",
    "side",
    "front",
    "back",
    "backside",
    "overhead",
    "hamburger",
    "cat",
    "dog",
    "red",
    "blue",
    "chair",
]


def _clip_tokenizer(scratch: Path):
    """A byte-level BPE CLIP tokenizer over letters, a few whole words and ``,``."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", ",", ",</w>"]:
        vocab[token] = len(vocab)
    for letter in string.ascii_lowercase:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    merges: list[str] = []
    for word in _WORDS:  # merge each word left to right: w o -> wo, wo r -> wor, ...
        pieces = [*word[:-1], word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merged = current + piece
            rule = f"{current} {piece}"
            if rule not in merges:
                merges.append(rule)
            vocab.setdefault(merged, len(vocab))
            current = merged
    (scratch / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (scratch / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    return CLIPTokenizer.from_pretrained(str(scratch), model_max_length=MAX_LENGTH)


def _t5_tokenizer():
    """A Unigram (sentencepiece-style) T5 tokenizer built with ``tokenizers``; appends ``</s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0), (",", -3.0)]
    pieces += [("\u2581" + w, -1.0) for w in _WORDS]
    pieces += [(c, -5.0) for c in string.ascii_lowercase]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=MAX_LENGTH,
    )


def make_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random Stable Diffusion pipeline under ``folder``; returns ``folder``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = _clip_tokenizer(Path(scratch))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_DIM,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=RENDER_SIZE // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        norm_num_groups=4,
        latent_channels=4,
        layers_per_block=1,
        sample_size=RENDER_SIZE,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return Path(folder)


def make_tiny_clip(
    folder: Path, seed: int = 0, image_size: int = RENDER_SIZE, processor: bool = True
) -> Path:
    """Save a tiny random CLIPModel + CLIPTokenizer (+ image processor) under ``folder``."""
    from transformers import CLIPConfig, CLIPModel

    try:  # transformers >= 5: the PIL backend by name (the default one needs torchvision)
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = _clip_tokenizer(Path(scratch))
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_DIM,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": MAX_LENGTH,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": TEXT_DIM,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if processor:
        CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        ).save_pretrained(folder)
    return Path(folder)


def make_tiny_if(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random DeepFloyd IF stage-I pipeline under ``folder``; returns ``folder``."""
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _t5_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=RENDER_SIZE // 2,
        in_channels=3,
        out_channels=6,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        cross_attention_dim=TEXT_DIM,
        encoder_hid_dim=TEXT_DIM,
        attention_head_dim=4,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        beta_start=0.0001,
        beta_end=0.02,
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.0,
        prediction_type="epsilon",
        variance_type="learned_range",
    )
    pipe = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return Path(folder)
