"""``stable-diffusion`` guidance with ``use_sjc``: SJC gradients against float64 hand math, and
SJC with variance reduction equal to SDS with uniform weighting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio_dreamfusion.guidance.sjc import sjc_noise_level
from studio_dreamfusion.prompts.output import PromptProcessorOutput
from tests.plugins.dreamfusion.guidance.reference import HandSDS, relative_error
from tests.plugins.dreamfusion.guidance.test_stable_diffusion import (
    AZIMUTH,
    DISTANCE,
    ELEVATION,
    TIMESTEPS,
    TOLERANCE,
    B,
    fixed_inputs,
    make_guidance,
)

SCALE = 100.0


def sd_alphas_cumprod64(steps: int = 1000) -> torch.Tensor:
    """Stable Diffusion's scaled-linear betas (0.00085 -> 0.012), their cumulative alphas."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def hand_sjc(
    hand: HandSDS,
    y: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    var_red: bool,
) -> torch.Tensor:
    """SJC in float64, written out: sigma, perturbed latents, scaled UNet input, CFG, denoised
    estimate, then ``-(D - y) / sigma`` or ``-(D - z_s) / sigma``."""
    abar = sd_alphas_cumprod64()[t].view(-1, 1, 1, 1)
    sigma = ((1.0 - abar) / abar).sqrt()
    z_s = y.double() + sigma * noise.double()
    model_input = z_s / (1.0 + sigma**2).sqrt()
    rows = []
    for i in range(y.shape[0]):
        eps_c = hand.eps(model_input[i], t[i], cond[i])
        eps_u = hand.eps(model_input[i], t[i], uncond[i])
        rows.append(eps_c + SCALE * (eps_c - eps_u))
    denoised = z_s - sigma * torch.stack(rows)
    return -(denoised - (y.double() if var_red else z_s)) / sigma


def latent_grad(guidance, prompts, latents, noise, compute=None) -> tuple[torch.Tensor, dict]:
    """``d loss / d latents`` of one guidance call on ``latents`` ``[B, 4, h, w]``."""
    render = latents.permute(0, 2, 3, 1).clone().requires_grad_(True)
    if compute is None:
        out = guidance(
            render, prompts, ELEVATION, AZIMUTH, DISTANCE, rgb_as_latents=True,
            noise=noise, timesteps=TIMESTEPS,
        )  # fmt: skip
    else:
        out = compute(
            render.permute(0, 3, 1, 2), prompts, ELEVATION, AZIMUTH, DISTANCE,
            noise=noise, timesteps=TIMESTEPS,
        )  # fmt: skip
    out["loss_sds"].backward()
    return render.grad.permute(0, 3, 1, 2), out


@pytest.mark.parametrize("var_red", [True, False])
def test_sjc_gradient_matches_float64(
    tiny_sd_model: Path, prompts: PromptProcessorOutput, var_red: bool
) -> None:
    guidance = make_guidance(tiny_sd_model, use_sjc=True, var_red=var_red)
    assert type(guidance.models.scheduler).__name__ == "DDPMScheduler"
    torch.testing.assert_close(
        guidance.alphas_cumprod.double(), sd_alphas_cumprod64(), rtol=1e-6, atol=0
    )
    size = guidance.latent_size
    latents, noise = fixed_inputs((B, 4, size, size), seed=3)
    actual, out = latent_grad(guidance, prompts, latents, noise)

    hand = HandSDS(guidance.models.unet, guidance.models.scheduler, 4)
    cond, uncond = prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE).chunk(2)
    grad = hand_sjc(hand, latents, noise, TIMESTEPS, cond, uncond, var_red)
    assert relative_error(actual, grad / B) < TOLERANCE
    assert abs(out["loss_sds"].item() / float(0.5 * (grad**2).sum() / B) - 1) < 1e-3
    # the two settings differ by the injected noise: -(z_s - y) / sigma = -noise
    other = hand_sjc(hand, latents, noise, TIMESTEPS, cond, uncond, not var_red)
    shift = noise.double() if var_red else -noise.double()
    torch.testing.assert_close(other - grad, shift, rtol=0, atol=1e-9)


def test_sjc_with_variance_reduction_is_sds_with_uniform_weighting(
    tiny_sd_model: Path, prompts: PromptProcessorOutput
) -> None:
    """The relation the reference implies, exactly: the SJC UNet input z_s / sqrt(1 + sigma^2)
    equals DDPM's x_t = sqrt(abar) y + sqrt(1 - abar) eps (since 1 + sigma^2 = 1 / abar), and
    -(D - y) / sigma = eps_hat - eps. So g_SJC(var_red) = g_SDS(uniform) for the same y, eps, t
    on the same schedule; only float32 rounding of the UNet input separates them."""
    sjc = make_guidance(tiny_sd_model, use_sjc=True, var_red=True)
    size = sjc.latent_size
    latents, noise = fixed_inputs((B, 4, size, size), seed=11)
    sjc_grad, _ = latent_grad(sjc, prompts, latents, noise)
    sjc.cfg.weighting_strategy = "uniform"  # SDS on the same guidance object and schedule
    sds_grad, _ = latent_grad(sjc, prompts, latents, noise, compute=sjc.compute_sds)
    assert relative_error(sjc_grad, sds_grad.double()) < 1e-5
    # and not with SDS's default weighting 1 - abar_t (a different gradient)
    sjc.cfg.weighting_strategy = "sds"
    weighted, _ = latent_grad(sjc, prompts, latents, noise, compute=sjc.compute_sds)
    assert relative_error(sjc_grad, weighted.double()) > 0.05
    # the noise level itself: 1 + sigma^2 = 1 / abar
    abar = sjc.alphas_cumprod[TIMESTEPS].double()
    sigma = sjc_noise_level(abar)
    torch.testing.assert_close(1.0 + sigma**2, 1.0 / abar)


def test_sjc_timesteps_follow_the_configured_range(
    tiny_sd_model: Path, prompts: PromptProcessorOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    guidance = make_guidance(
        tiny_sd_model, use_sjc=True, min_step_percent=0.01, max_step_percent=0.97
    )
    assert (guidance.min_step, guidance.max_step) == (10, 970)
    seen: list[torch.Tensor] = []

    def record(noisy: torch.Tensor, t: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(t.clone())
        return torch.zeros_like(noisy)

    monkeypatch.setattr(guidance, "guided_noise", record)
    render = torch.randn(256, 16, 16, 4)
    elevation = torch.zeros(256)
    out = guidance(render, prompts, elevation, elevation, elevation + 1, rgb_as_latents=True)
    t = torch.cat(seen)
    assert int(t.min()) >= 10 and int(t.max()) <= 970 and t.unique().numel() > 100
    assert torch.isfinite(out["loss_sds"])
