"""Guidance and prompt processors on CUDA (GPU machine): fp16 weights, autocast, offload, 8-bit T5."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from studio_dreamfusion.guidance.deep_floyd import DeepFloydGuidance
from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance
from studio_dreamfusion.prompts.deep_floyd import DeepFloydPromptProcessor
from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_dreamfusion.prompts.stable_diffusion import StableDiffusionPromptProcessor
from tests.plugins.dreamfusion.guidance.reference import cache_dir, relative_error

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
B = 2


def cameras() -> dict[str, torch.Tensor]:
    """A front and a back view (built lazily: collection must work without CUDA)."""
    return {
        "elevation": torch.tensor([10.0, 30.0], device=CUDA),
        "azimuth": torch.tensor([20.0, 160.0], device=CUDA),
        "camera_distances": torch.ones(B, device=CUDA),
    }


@pytest.fixture(scope="module")
def sd_prompts(tiny_sd_model: Path, tmp_path_factory: pytest.TempPathFactory):
    with cache_dir(tmp_path_factory.mktemp("cache")):
        return StableDiffusionPromptProcessor(
            {"pretrained_model_name_or_path": str(tiny_sd_model), "prompt": "a red chair"},
            device=CUDA,
        )()


@pytest.fixture(scope="module")
def if_prompts(tiny_if_model: Path, tmp_path_factory: pytest.TempPathFactory):
    with cache_dir(tmp_path_factory.mktemp("cache")):
        return DeepFloydPromptProcessor(
            {"pretrained_model_name_or_path": str(tiny_if_model), "prompt": "a blue dog"},
            device=CUDA,
        )()


def sds_grad(
    guidance, prompts: PromptProcessorOutput, render: torch.Tensor, amp: bool = False, **kw
) -> torch.Tensor:
    """d loss_sds / d render with fixed noise and timesteps; ``amp``: forward under bf16 autocast
    (backward outside it, as the trainer does)."""
    render = render.clone().requires_grad_(True)
    gen = torch.Generator(device=CUDA).manual_seed(0)
    if isinstance(guidance, StableDiffusionGuidance):
        shape = (B, 4, guidance.latent_size, guidance.latent_size)
    else:
        shape = (B, 3, guidance.image_size, guidance.image_size)
    noise = torch.randn(shape, generator=gen, device=CUDA)
    timesteps = torch.tensor([60, 870], device=CUDA)
    with torch.autocast(CUDA.type, dtype=torch.bfloat16, enabled=amp):
        out = guidance(render, prompts, **cameras(), noise=noise, timesteps=timesteps, **kw)
    assert torch.isfinite(out["loss_sds"])
    out["loss_sds"].backward()
    return render.grad


def test_sd_fp16_weights_match_fp32(tiny_sd_model: Path, sd_prompts: PromptProcessorOutput):
    fp16 = StableDiffusionGuidance(
        {"pretrained_model_name_or_path": str(tiny_sd_model)}, device=CUDA
    )
    fp32 = StableDiffusionGuidance(
        {"pretrained_model_name_or_path": str(tiny_sd_model), "half_precision_weights": False},
        device=CUDA,
    )
    assert next(fp16.models.unet.parameters()).dtype == torch.float16
    assert next(fp32.models.unet.parameters()).dtype == torch.float32
    latents = torch.randn(B, 16, 16, 4, device=CUDA, generator=torch.Generator(CUDA).manual_seed(1))
    g16 = sds_grad(fp16, sd_prompts, latents, rgb_as_latents=True)
    g32 = sds_grad(fp32, sd_prompts, latents, rgb_as_latents=True)
    assert g16.dtype == torch.float32 and torch.isfinite(g16).all()
    assert relative_error(g16, g32.double()) < 2e-2


def test_sd_autocast_outside_does_not_change_the_result(
    tiny_sd_model: Path, sd_prompts: PromptProcessorOutput
):
    guidance = StableDiffusionGuidance(
        {"pretrained_model_name_or_path": str(tiny_sd_model), "half_precision_weights": False},
        device=CUDA,
    )
    rgb = torch.rand(B, 32, 32, 3, device=CUDA)
    torch.manual_seed(3)
    plain = sds_grad(guidance, sd_prompts, rgb)
    torch.manual_seed(3)
    amp = sds_grad(guidance, sd_prompts, rgb, amp=True)
    assert relative_error(amp, plain.double()) < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="needs accelerate")
def test_sd_sequential_offload_matches(tiny_sd_model: Path, sd_prompts: PromptProcessorOutput):
    base = {"pretrained_model_name_or_path": str(tiny_sd_model), "half_precision_weights": False}
    plain = StableDiffusionGuidance(base, device=CUDA)
    offloaded = StableDiffusionGuidance(
        {**base, "enable_sequential_cpu_offload": True, "enable_attention_slicing": True},
        device=CUDA,
    )
    latents = torch.randn(B, 16, 16, 4, device=CUDA)
    a = sds_grad(plain, sd_prompts, latents, rgb_as_latents=True)
    b = sds_grad(offloaded, sd_prompts, latents, rgb_as_latents=True)
    assert relative_error(b, a.double()) < 1e-4


def test_if_fp16_weights_match_fp32(tiny_if_model: Path, if_prompts: PromptProcessorOutput):
    fp16 = DeepFloydGuidance({"pretrained_model_name_or_path": str(tiny_if_model)}, device=CUDA)
    fp32 = DeepFloydGuidance(
        {"pretrained_model_name_or_path": str(tiny_if_model), "half_precision_weights": False},
        device=CUDA,
    )
    assert next(fp16.models.unet.parameters()).dtype == torch.float16
    rgb = torch.rand(B, 32, 32, 3, device=CUDA, generator=torch.Generator(CUDA).manual_seed(2))
    g16, g32 = sds_grad(fp16, if_prompts, rgb), sds_grad(fp32, if_prompts, rgb)
    assert torch.isfinite(g16).all() and relative_error(g16, g32.double()) < 2e-2


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None
    or importlib.util.find_spec("accelerate") is None,
    reason="needs bitsandbytes and accelerate",
)
def test_if_8bit_text_encoder_close_to_full_precision(
    tiny_if_model: Path, if_prompts: PromptProcessorOutput, tmp_path: Path
):
    with cache_dir(tmp_path):
        out = DeepFloydPromptProcessor(
            {
                "pretrained_model_name_or_path": str(tiny_if_model),
                "prompt": "a blue dog",
                "load_in_8bit": True,
            },
            device=CUDA,
        )()
    assert relative_error(out.text_embeddings, if_prompts.text_embeddings.double()) < 0.1
