"""The colour pull-back check of latent encoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from studio_primitives.models.architectures import SDFormConfig, build_sd_form
from studio_primitives.models.encoder_check import colour_pullback, vae_means


def pooled_colour(images: torch.Tensor) -> torch.Tensor:
    """A linear 'encoder': 2x2 average pooling (what Stable Diffusion's latents roughly are)."""
    return F.avg_pool2d(images, 2)


def test_a_linear_colour_encoder_pulls_every_colour_back_to_itself() -> None:
    result = colour_pullback(pooled_colour, size=8)
    assert result["aligned"] == 1.0
    red = result["mean_rgb"]["red"]
    assert red[0] > 0 > red[1] and red[0] > 0 > red[2]  # more red, less green and blue
    # linear and spatially uniform: the pull-back is constant, all of it signal
    assert abs(result["noise"]["red"] - sum(abs(v) for v in red) / 3) < 1e-6


def test_any_linear_encoder_passes_and_a_wiggly_one_is_caught() -> None:
    # a linear code needs no colour-aligned channels: J^T J is positive semi-definite
    mixed = colour_pullback(lambda x: pooled_colour(x)[:, [1, 2, 0]] * -1.0, size=8)
    assert mixed["aligned"] == 1.0
    # a code whose local slope disagrees with its finite change (non-monotonic in colour)
    wiggly = colour_pullback(lambda x: pooled_colour(torch.sin(20.0 * x)), size=8)
    assert wiggly["aligned"] == 0.0


def test_runs_on_an_sd_form_autoencoder() -> None:
    torch.manual_seed(0)
    config = SDFormConfig(image_size=16, vae_channels=(8, 16), vae_norm_groups=8)
    vae = build_sd_form(config).vae
    result = colour_pullback(vae_means(vae), size=16)
    assert set(result["mean_rgb"]) == {"red", "green", "blue"}
    assert all(torch.isfinite(torch.tensor(v)).all() for v in result["mean_rgb"].values())
    assert 0.0 <= result["aligned"] <= 1.0
