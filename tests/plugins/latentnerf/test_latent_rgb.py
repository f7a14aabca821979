"""The latent-to-RGB map of the primitives VAE, fitted on its own decodes, and the
``sd-latent-adapter`` material that starts from such a map."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from studio.errors import ConfigError
from studio_dreamfusion.latent_decoder import LatentDecoder
from studio_latentnerf.latent_rgb import approximation_psnr, fit_latent_to_rgb
from studio_latentnerf.materials import SD_LATENT_TO_RGB, SDLatentAdapter, latent_to_rgb
from studio_primitives.data import generate

#: The fitted map must reproduce the VAE's colours within 25 dB (RMS error 0.056, 14 of 255
#: levels): the eight primitives colours are at least 0.5 apart in RGB, so such an error keeps
#: every colour recognisable; Stable Diffusion's own matrix gives 12.9 dB on this VAE, a
#: constant grey 10.1 dB (measured), and the fit reaches 31.9 dB.
MIN_PSNR_DB = 25.0


@pytest.fixture(scope="module")
def vae():
    return LatentDecoder("primitives-sd", torch.device("cpu")).vae


def data_latents(vae, seed: int, n: int) -> torch.Tensor:
    """Scaled latents of ``n`` primitives images of data set ``seed`` (the posterior mean)."""
    images = torch.stack(
        [torch.tensor(s.image).permute(2, 0, 1).float() / 255.0 for s in generate(n, seed, 64)]
    )
    with torch.no_grad():
        return vae.encode(images * 2.0 - 1.0).latent_dist.mean * vae.config.scaling_factor


def test_the_fitted_map_reproduces_held_out_decodes(vae) -> None:
    matrix = fit_latent_to_rgb(vae, data_latents(vae, seed=0, n=96))
    held_out = data_latents(vae, seed=1, n=48)
    fitted = approximation_psnr(vae, held_out, matrix)
    sd = approximation_psnr(vae, held_out, torch.tensor(SD_LATENT_TO_RGB))
    print(f"held-out PSNR: fitted {fitted:.2f} dB, SD's matrix {sd:.2f} dB")
    assert fitted >= MIN_PSNR_DB and fitted > sd + 10.0
    assert matrix.shape == (4, 3)


def test_least_squares_recovers_an_exact_linear_decoder() -> None:
    """A 'VAE' whose decode is exactly linear per latent pixel (2x2 pixels each): the fit finds
    its matrix."""
    true = torch.randn(4, 3, dtype=torch.float64) * 0.3

    class LinearVAE:
        config = SimpleNamespace(scaling_factor=2.0)

        def decode(self, z: torch.Tensor):
            colours = torch.einsum("nchw,cd->ndhw", z.double() * 2.0, true)
            upsampled = colours.repeat_interleave(2, -1).repeat_interleave(2, -2)
            return type("Out", (), {"sample": upsampled})()

    latents = torch.randn(6, 4, 8, 8, dtype=torch.float64) * 0.2  # decodes stay in [-1, 1]
    torch.testing.assert_close(fit_latent_to_rgb(LinearVAE(), latents), true)


def test_the_adapter_is_the_clamped_affine_map_and_learns() -> None:
    material = SDLatentAdapter({})
    features = torch.randn(10, 4)
    expected = ((features @ torch.tensor(SD_LATENT_TO_RGB) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(material(features), expected)
    torch.testing.assert_close(latent_to_rgb(features, material.matrix), expected)
    material(features).sum().backward()
    assert material.matrix.grad is not None and material.matrix.grad.abs().sum() > 0
    with pytest.raises(Exception, match="n_feature_dims=4"):
        material(torch.randn(3, 3))
    with pytest.raises(ConfigError, match="4 rows of 3"):
        SDLatentAdapter.validate_config(SDLatentAdapter.Config(matrix=((1.0, 2.0, 3.0),)), "m")


def test_the_primitives_preset_ships_the_fitted_map(vae) -> None:
    """latentnerf-refine-primitives' adapter starts from this fit (seed 0, 96 images).

    The preset holds the fit rounded to 4 decimals (error up to 5e-5), and the fit itself moves
    with the installed libraries: a fresh install on 2026-12-07 moved it by up to 2.3e-4 from the
    shipped numbers. The tolerance, 5e-4, covers both; the fit to another sample of the data
    (seed 1) is 0.49 away, so a map that is not this fit still fails."""
    from studio.config.resolve import load_experiment

    parsed = load_experiment("latentnerf-refine-primitives", ["system.weights="], "a red cube")
    shipped = torch.tensor(parsed.parsed["system"]["material"]["matrix"], dtype=torch.float64)
    fitted = fit_latent_to_rgb(vae, data_latents(vae, seed=0, n=96))
    torch.testing.assert_close(shipped, fitted, atol=5e-4, rtol=0)
