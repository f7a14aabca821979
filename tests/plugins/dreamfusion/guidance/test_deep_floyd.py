"""``deep-floyd`` guidance on a tiny random IF: pixel-space SDS against float64 hand math."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from studio.errors import ConfigError
from studio_dreamfusion.guidance.deep_floyd import DeepFloydGuidance
from studio_dreamfusion.prompts.deep_floyd import DeepFloydPromptProcessor
from studio_dreamfusion.prompts.output import PromptProcessorOutput
from tests.plugins.dreamfusion.guidance.reference import HandSDS, cache_dir, relative_error

CPU = torch.device("cpu")
B = 2
ELEVATION = torch.tensor([0.0, 30.0])  # front view, back view
AZIMUTH = torch.tensor([-30.0, 170.0])
DISTANCE = torch.ones(B)
TIMESTEPS = torch.tensor([100, 750])
TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def prompts(tiny_if_model: Path, tmp_path_factory: pytest.TempPathFactory) -> PromptProcessorOutput:
    with cache_dir(tmp_path_factory.mktemp("cache")):
        processor = DeepFloydPromptProcessor(
            {"pretrained_model_name_or_path": str(tiny_if_model), "prompt": "a blue dog"},
            device=CPU,
        )
    return processor()


def make_guidance(model: Path, **cfg: object) -> DeepFloydGuidance:
    return DeepFloydGuidance({"pretrained_model_name_or_path": str(model), **cfg}, device=CPU)


@pytest.mark.parametrize("strategy", ["sds", "uniform", "fantasia3d"])
def test_pixel_sds_gradient_matches_float64(
    tiny_if_model: Path, prompts: PromptProcessorOutput, strategy: str
) -> None:
    guidance = make_guidance(tiny_if_model, weighting_strategy=strategy)
    size = guidance.image_size
    assert size == 16
    gen = torch.Generator().manual_seed(11)
    rgb = torch.rand(B, 32, 32, 3, generator=gen, requires_grad=True)  # resized to 16x16
    noise = torch.randn(B, 3, size, size, generator=gen)
    out = guidance(rgb, prompts, ELEVATION, AZIMUTH, DISTANCE, noise=noise, timesteps=TIMESTEPS)
    out["loss_sds"].backward()

    rgb64 = rgb.detach().double().requires_grad_()
    pixels = F.interpolate(rgb64.permute(0, 3, 1, 2), (size, size), mode="bilinear") * 2 - 1
    hand = HandSDS(guidance.models.unet, guidance.models.scheduler, 3)
    cond, uncond = prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE).chunk(2)
    grad = hand.cfg_grad(pixels.detach(), noise, TIMESTEPS, cond, uncond, 20.0, strategy)
    (expected,) = torch.autograd.grad(pixels, rgb64, grad / B)
    assert relative_error(rgb.grad, expected) < TOLERANCE
    assert abs(out["grad_norm"].item() / grad.norm().item() - 1) < 1e-4
    # first 3 of the 6 output channels are epsilon: using the variance half instead is far off
    hand_variance = HandSDS(guidance.models.unet, guidance.models.scheduler, 6)
    eps6 = hand_variance.eps(
        hand.noisy(pixels.detach(), noise, TIMESTEPS)[0], TIMESTEPS[0], cond[0]
    )
    assert eps6.shape[0] == 6 and (eps6[3:] - eps6[:3]).abs().max() > 1e-2


def test_rgb_as_latents_is_an_error(tiny_if_model: Path, prompts: PromptProcessorOutput) -> None:
    guidance = make_guidance(tiny_if_model)
    with pytest.raises(ConfigError, match="rgb_as_latents=True"):
        guidance(torch.rand(1, 16, 16, 4), prompts, *(torch.zeros(1),) * 2, torch.ones(1), True)


def test_defaults_and_channels_last(tiny_if_model: Path) -> None:
    guidance = make_guidance(tiny_if_model)
    cfg = guidance.cfg
    assert cfg.guidance_scale == 20.0 and cfg.enable_channels_last_format
    assert (cfg.min_step_percent, cfg.max_step_percent) == (0.02, 0.98)
    assert DeepFloydGuidance.Config().pretrained_model_name_or_path == "DeepFloyd/IF-I-XL-v1.0"
    unet = guidance.models.unet
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in unet.parameters()) and not unet.training


def test_loads_an_fp16_only_folder(tiny_if_model: Path, tmp_path: Path) -> None:
    """A folder holding only fp16 UNet weights (a partial download) loads with variant fp16."""
    from diffusers import UNet2DConditionModel

    folder = tmp_path / "if-fp16"
    shutil.copytree(tiny_if_model, folder)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    for weights in (folder / "unet").glob("diffusion_pytorch_model*"):
        weights.unlink()
    unet.to(torch.float16).save_pretrained(folder / "unet", variant="fp16")
    guidance = make_guidance(folder)
    loaded = guidance.models.unet
    assert next(loaded.parameters()).dtype == torch.float32  # fp32 compute on CPU
    w_loaded, w_saved = loaded.conv_in.weight, unet.conv_in.weight
    torch.testing.assert_close(w_loaded, w_saved.half().float())
