"""``stable-diffusion-vsd``'s validation samples (``visualize_samples``): the DPM-Solver loop on
tiny random SD models, the two models from the same noise, and the case where the LoRA model is
exactly the pretrained one."""

from __future__ import annotations

from pathlib import Path

import torch

from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_prolificdreamer.guidance.sampling import sample_latents
from tests.plugins.prolificdreamer.guidance.test_stable_diffusion_vsd import (
    AZIMUTH,
    DISTANCE,
    ELEVATION,
    make_guidance,
    perturb_lora,
)

C2W = torch.eye(4).expand(2, 4, 4).clone()


def test_sample_latents_runs_the_solver_from_the_given_noise() -> None:
    from diffusers import DDPMScheduler

    config = DDPMScheduler(num_train_timesteps=1000).config
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    seen: list[torch.Tensor] = []

    def no_noise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return torch.zeros_like(x)

    # a model that predicts no noise makes every step keep x_t as the clean estimate: x_0 = x_T
    # scaled by the solver's sqrt(abar) factors, so the result is noise times a constant
    out = sample_latents(no_noise, config, noise, steps=5)
    assert len(seen) == 5 and all(t.shape == (2,) and t.dtype == torch.long for t in seen)
    assert seen[0][0] > seen[-1][0]  # from noisy to clean
    ratio = out / noise
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)


def test_samples_of_both_models_are_images_and_seeded(
    tiny_sd_model: Path, tiny_sd_v_model: Path, prompts: PromptProcessorOutput
) -> None:
    guidance = make_guidance(tiny_sd_model, tiny_sd_v_model)
    perturb_lora(guidance, seed=3)
    first = guidance.sample(prompts, ELEVATION, AZIMUTH, DISTANCE, steps=4, c2w=C2W)
    again = guidance.sample(prompts, ELEVATION, AZIMUTH, DISTANCE, steps=4, c2w=C2W)
    other = guidance.sample(prompts, ELEVATION, AZIMUTH, DISTANCE, steps=4, seed=1, c2w=C2W)
    size = guidance.latent_size * guidance.vae_scale_factor
    for name in ("pretrained", "lora"):
        image = first[name]
        assert image.shape == (2, size, size, 3) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert torch.equal(image, again[name]) and not torch.equal(image, other[name])
    assert (first["pretrained"] - first["lora"]).abs().max() > 1e-3


def test_an_untrained_lora_with_a_silent_camera_samples_what_the_pretrained_model_does(
    tiny_sd_model: Path, prompts: PromptProcessorOutput
) -> None:
    # one shared UNet, zero up-projections (the LoRA at initialisation), a camera embedding that
    # outputs 0, CFG 1 and the plain prompt on both sides: the two noise estimates are the same
    guidance = make_guidance(
        tiny_sd_model, tiny_sd_model, guidance_scale=1.0, view_dependent_prompting=False
    )
    with torch.no_grad():
        for param in guidance.camera_embedding.parameters():
            param.zero_()
    samples = guidance.sample(prompts, ELEVATION, AZIMUTH, DISTANCE, steps=4, c2w=C2W)
    assert torch.allclose(samples["pretrained"], samples["lora"], atol=1e-5)
