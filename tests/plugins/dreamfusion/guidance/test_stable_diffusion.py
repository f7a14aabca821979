"""``stable-diffusion`` guidance on a tiny random SD: SDS gradients against float64 hand math."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import ConfigError
from studio.registry import get_registry
from studio.systems.lift3d import build_component
from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance
from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_dreamfusion.prompts.stable_diffusion import StableDiffusionPromptProcessor
from tests.plugins.dreamfusion.guidance.reference import HandSDS, cache_dir, relative_error

CPU = torch.device("cpu")
B = 2
ELEVATION = torch.tensor([10.0, 75.0])  # front view, overhead view
AZIMUTH = torch.tensor([20.0, 180.0])
DISTANCE = torch.ones(B)
TIMESTEPS = torch.tensor([60, 870])
TOLERANCE = 5e-5  # float32 model vs float64 hand computation (observed ~6e-6), relative to max


@pytest.fixture(scope="module")
def perp_neg_prompts(
    tiny_sd_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> PromptProcessorOutput:
    with cache_dir(tmp_path_factory.mktemp("cache")):
        processor = StableDiffusionPromptProcessor(
            {
                "pretrained_model_name_or_path": str(tiny_sd_model),
                "prompt": "a red chair",
                "use_perp_neg": True,
            },
            device=CPU,
        )
    return processor()


def make_guidance(model: Path, **cfg: object) -> StableDiffusionGuidance:
    return StableDiffusionGuidance({"pretrained_model_name_or_path": str(model), **cfg}, device=CPU)


def fixed_inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)


@pytest.mark.parametrize("strategy", ["sds", "uniform", "fantasia3d"])
def test_latent_sds_gradient_matches_float64(
    tiny_sd_model: Path, prompts: PromptProcessorOutput, strategy: str
) -> None:
    guidance = make_guidance(tiny_sd_model, weighting_strategy=strategy)
    size = guidance.latent_size
    latents, noise = fixed_inputs((B, 4, size, size))
    render = latents.permute(0, 2, 3, 1).clone().requires_grad_(True)  # [B, H, W, 4]
    out = guidance(
        render, prompts, ELEVATION, AZIMUTH, DISTANCE, rgb_as_latents=True,
        noise=noise, timesteps=TIMESTEPS,
    )  # fmt: skip
    out["loss_sds"].backward()

    hand = HandSDS(guidance.models.unet, guidance.models.scheduler, 4)
    cond, uncond = prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE).chunk(2)
    grad = hand.cfg_grad(latents, noise, TIMESTEPS, cond, uncond, 100.0, strategy)
    actual = render.grad.permute(0, 3, 1, 2)
    assert relative_error(actual, grad / B) < TOLERANCE
    expected_loss = float(0.5 * (grad**2).sum() / B)
    assert abs(out["loss_sds"].item() / expected_loss - 1) < 1e-3
    assert abs(float(out["grad_norm"]) / float(grad.norm()) - 1) < 1e-4
    assert (out["min_step"], out["max_step"]) == (20, 980)
    # the diffusers CFG convention (scale s+1) is clearly distinguishable from the reference's
    other = hand.cfg_grad(latents, noise, TIMESTEPS, cond, uncond, 100.0, strategy, True)
    assert relative_error(actual, other / B) > 20 * TOLERANCE


def test_rgb_sds_gradient_through_the_vae(
    tiny_sd_model: Path, prompts: PromptProcessorOutput
) -> None:
    guidance = make_guidance(tiny_sd_model)
    rgb = torch.rand(B, 24, 24, 3, generator=torch.Generator().manual_seed(5)).requires_grad_()
    noise = fixed_inputs((B, 4, guidance.latent_size, guidance.latent_size))[1]
    torch.manual_seed(123)  # the VAE posterior sample
    out = guidance(rgb, prompts, ELEVATION, AZIMUTH, DISTANCE, noise=noise, timesteps=TIMESTEPS)
    out["loss_sds"].backward()

    # recompute the encoding with the same posterior sample, then chain the float64 SDS gradient
    rgb2 = rgb.detach().clone().requires_grad_()
    size = guidance.image_size
    assert size == 32
    resized = F.interpolate(rgb2.permute(0, 3, 1, 2), (size, size), mode="bilinear")
    torch.manual_seed(123)
    latents = guidance.models.vae.encode(resized * 2 - 1).latent_dist.sample() * 0.18215
    hand = HandSDS(guidance.models.unet, guidance.models.scheduler, 4)
    cond, uncond = prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE).chunk(2)
    grad = hand.cfg_grad(latents.detach(), noise, TIMESTEPS, cond, uncond, 100.0, "sds")
    (expected,) = torch.autograd.grad(latents, rgb2, (grad / B).float())
    assert relative_error(rgb.grad, expected.double()) < TOLERANCE


def test_perp_neg_gradient_matches_float64(
    tiny_sd_model: Path, perp_neg_prompts: PromptProcessorOutput
) -> None:
    guidance = make_guidance(tiny_sd_model, guidance_scale=7.5)
    size = guidance.latent_size
    latents, noise = fixed_inputs((B, 4, size, size), seed=7)
    elevation, azimuth = torch.tensor([0.0, 20.0]), torch.tensor([30.0, -120.0])
    render = latents.permute(0, 2, 3, 1).clone().requires_grad_(True)
    out = guidance(
        render, perp_neg_prompts, elevation, azimuth, DISTANCE, rgb_as_latents=True,
        noise=noise, timesteps=TIMESTEPS,
    )  # fmt: skip
    out["loss_sds"].backward()
    hand = HandSDS(guidance.models.unet, guidance.models.scheduler, 4)
    grad = hand.perp_neg_grad(
        latents, noise, TIMESTEPS, perp_neg_prompts, elevation, azimuth, 7.5, "sds"
    )
    assert relative_error(render.grad.permute(0, 3, 1, 2), grad / B) < TOLERANCE


def test_grad_clip_and_its_schedule(tiny_sd_model: Path, prompts: PromptProcessorOutput) -> None:
    guidance = make_guidance(tiny_sd_model, grad_clip=[0, 0.01, 1.0, 100])
    assert guidance.grad_clip_val == pytest.approx(0.01)
    guidance.update_step(0, 50)
    assert guidance.grad_clip_val == pytest.approx(0.505)
    guidance.update_step(0, 0)
    latents, noise = fixed_inputs((B, 4, 16, 16))
    render = latents.permute(0, 2, 3, 1).clone().requires_grad_(True)
    guidance(
        render, prompts, ELEVATION, AZIMUTH, DISTANCE, rgb_as_latents=True,
        noise=noise, timesteps=TIMESTEPS,
    )["loss_sds"].backward()  # fmt: skip
    hand = HandSDS(guidance.models.unet, guidance.models.scheduler, 4)
    cond, uncond = prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE).chunk(2)
    grad = hand.cfg_grad(latents, noise, TIMESTEPS, cond, uncond, 100.0, "sds")
    clipped = grad.clamp(-0.01, 0.01)
    assert (grad.abs() > 0.01).float().mean() > 0.5  # the clip is active on most entries
    actual = render.grad.permute(0, 3, 1, 2).double()
    assert (actual - clipped / B).abs().max() < TOLERANCE * grad.abs().max() / B
    # (z - (z - g)) in float32 loses ~1e-7 absolute, so compare loosely
    assert actual.abs().max() == pytest.approx(0.01 / B, rel=1e-4)


def test_nan_predictions_give_zero_gradient(
    tiny_sd_model: Path, prompts: PromptProcessorOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    guidance = make_guidance(tiny_sd_model)
    real = guidance.predict_noise

    def poisoned(noisy: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        eps = real(noisy, t, emb)
        eps[:, 0] = float("nan")  # channel 0 of every sample
        return eps

    monkeypatch.setattr(guidance, "predict_noise", poisoned)
    render = torch.randn(B, 16, 16, 4, requires_grad=True)
    out = guidance(render, prompts, ELEVATION, AZIMUTH, DISTANCE, rgb_as_latents=True)
    out["loss_sds"].backward()
    assert torch.isfinite(out["loss_sds"]) and torch.isfinite(render.grad).all()
    assert render.grad[..., 0].abs().max() == 0 and render.grad[..., 1:].abs().max() > 0


def test_timestep_bounds_follow_the_schedules(
    tiny_sd_model: Path, prompts: PromptProcessorOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    guidance = make_guidance(
        tiny_sd_model, min_step_percent=[0.3, 0.02, 1000], max_step_percent=[100, 0.98, 0.5, 300]
    )
    for step, lo, hi in [(0, 0.3, 0.98), (200, 0.244, 0.74), (500, 0.16, 0.5), (2000, 0.02, 0.5)]:
        guidance.update_step(0, step)
        assert (guidance.min_step, guidance.max_step) == (int(1000 * lo + 1e-9), int(1000 * hi))
    seen: list[torch.Tensor] = []

    def record(noisy: torch.Tensor, t: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(t.clone())
        return torch.zeros_like(noisy)

    monkeypatch.setattr(guidance, "guided_noise", record)
    render = torch.randn(64, 16, 16, 4)
    for step in (0, 200, 2000):
        guidance.update_step(0, step)
        seen.clear()
        for _ in range(20):
            out = guidance(
                render, prompts, torch.zeros(64), torch.zeros(64), torch.ones(64),
                rgb_as_latents=True,
            )  # fmt: skip
        t = torch.cat(seen)
        assert (out["min_step"], out["max_step"]) == (guidance.min_step, guidance.max_step)
        assert t.min() >= guidance.min_step and t.max() <= guidance.max_step
        span = guidance.max_step - guidance.min_step
        assert t.max() - t.min() > 0.9 * span  # the whole range is used


def test_config_errors(tiny_sd_model: Path) -> None:
    with pytest.raises(ConfigError, match="weighting_strategy='linear'"):
        make_guidance(Path("/nonexistent"), weighting_strategy="linear")
    with pytest.raises(ConfigError, match="max_step_percent"):
        make_guidance(tiny_sd_model, min_step_percent=0.6, max_step_percent=0.5)
    with pytest.raises(ConfigError, match=r"min_step_percent=1\.5"):
        make_guidance(tiny_sd_model, min_step_percent=1.5)


def test_vram_options_keep_the_forward_exact_on_cpu(
    tiny_sd_model: Path, prompts: PromptProcessorOutput
) -> None:
    plain = make_guidance(tiny_sd_model)
    tuned = make_guidance(
        tiny_sd_model,
        enable_attention_slicing=True,
        enable_channels_last_format=True,
        enable_memory_efficient_attention=True,
        enable_sequential_cpu_offload=True,  # nothing to offload to on CPU: skipped
    )
    unet = tuned.models.unet
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.models.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"SlicedAttnProcessor"}
    latents, noise = fixed_inputs((B, 4, 16, 16))
    render = latents.permute(0, 2, 3, 1)
    args = (prompts, ELEVATION, AZIMUTH, DISTANCE)
    kw = {"rgb_as_latents": True, "noise": noise, "timesteps": TIMESTEPS}
    a, b = plain(render, *args, **kw)["loss_sds"], tuned(render, *args, **kw)["loss_sds"]
    assert abs(float(a) / float(b) - 1) < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("tomesd") is not None, reason="tomesd installed")
def test_token_merging_without_tomesd_is_a_clear_error(tiny_sd_model: Path) -> None:
    with pytest.raises(ConfigError, match=r"token_merging=true needs the tomesd package"):
        make_guidance(tiny_sd_model, token_merging=True)


def test_models_frozen_fp32_on_cpu_and_outside_modules(tiny_sd_model: Path) -> None:
    guidance = make_guidance(tiny_sd_model, half_precision_weights=True)
    unet, vae = guidance.models.unet, guidance.models.vae
    assert guidance.weights_dtype == torch.float32
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in unet.parameters())
    assert not any(p.requires_grad for p in vae.parameters())
    assert not unet.training and not vae.training
    assert not isinstance(guidance, nn.Module) and not isinstance(guidance.models, nn.Module)
    holder = nn.Module()
    holder.guidance = guidance  # as a system holds it
    assert list(holder.parameters()) == []
    assert (guidance.image_size, guidance.latent_size, guidance.vae_scale_factor) == (32, 16, 2)


def test_decode_latents(tiny_sd_model: Path) -> None:
    guidance = make_guidance(tiny_sd_model)
    latents = torch.randn(2, 4, 8, 8)  # resized to the UNet's 16x16 before decoding
    images = guidance.decode_latents(latents)
    assert images.shape == (2, 32, 32, 3) and images.min() >= 0 and images.max() <= 1
    up = F.interpolate(latents, (16, 16), mode="bilinear")
    with torch.no_grad():
        manual = guidance.models.vae.decode(up / 0.18215).sample
    expected = (manual * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(images, expected)
    assert images.std() > 1e-3


def test_registered_and_built_by_name(tiny_sd_model: Path) -> None:
    registry = get_registry()
    assert {"stable-diffusion", "deep-floyd"} <= set(registry.names("guidance"))
    assert {"stable-diffusion", "deep-floyd"} <= set(registry.names("prompt_processor"))
    guidance = build_component(
        "guidance", "stable-diffusion", {"pretrained_model_name_or_path": str(tiny_sd_model)},
        "system.guidance", device=CPU,
    )  # fmt: skip
    assert isinstance(guidance, StableDiffusionGuidance)
    assert guidance.cfg.guidance_scale == 100.0 and guidance.cfg.weighting_strategy == "sds"
