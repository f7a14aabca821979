"""select_files: what a download fetches from a repository listing."""

from __future__ import annotations

import pytest

from studio.models.files import select_files, weight_variant

# the shape of runwayml/stable-diffusion-v1-5's listing (abridged)
SD15 = [
    ".gitattributes",
    "README.md",
    "model_index.json",
    "v1-5-pruned-emaonly.ckpt",
    "v1-5-pruned-emaonly.safetensors",
    "v1-5-pruned.ckpt",
    "feature_extractor/preprocessor_config.json",
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "safety_checker/pytorch_model.bin",
    "safety_checker/model.fp16.safetensors",
    "safety_checker/pytorch_model.fp16.bin",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "text_encoder/flax_model.msgpack",
    "tokenizer/merges.txt",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.non_ema.bin",
    "unet/diffusion_pytorch_model.non_ema.safetensors",
    "unet/diffusion_pytorch_model.onnx",
    "vae/config.json",
    "vae/diffusion_pytorch_model.bin",
    "vae/diffusion_pytorch_model.safetensors",
    "vae_encoder.mlpackage/Data/weights.bin",
]


@pytest.mark.parametrize(
    ("path", "variant"),
    [
        ("unet/diffusion_pytorch_model.safetensors", ""),
        ("unet/diffusion_pytorch_model.fp16.safetensors", "fp16"),
        ("text_encoder/model.8bit-00001-of-00002.safetensors", "8bit"),
        ("text_encoder/pytorch_model-00001-of-00002.bin", ""),
        ("unet/diffusion_pytorch_model.non_ema.bin", "non_ema"),
    ],
)
def test_weight_variant(path, variant):
    assert weight_variant(path) == variant


def test_whole_pipeline():
    assert select_files(SD15) == [
        ".gitattributes",
        "README.md",
        "feature_extractor/preprocessor_config.json",
        "model_index.json",
        "safety_checker/config.json",
        "safety_checker/model.fp16.safetensors",
        "safety_checker/model.safetensors",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]


def test_subfolders_plus_top_level_json():
    assert select_files(SD15, ["unet", "tokenizer"]) == [
        "model_index.json",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
    ]


def test_bin_kept_when_no_safetensors_of_that_variant():
    listing = [
        "config.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "model.fp16.safetensors",
        "weights.ckpt",
    ]
    # not a diffusers pipeline: top-level weights stay; fp16 safetensors does not replace fp32 bins
    assert select_files(listing) == sorted(listing)
