"""The linear latent-to-RGB approximation of a VAE, fitted on the VAE's own decodes.

For latents ``z [N, 4, h, w]`` the VAE decodes images ``x [N, 3, H, W]`` in [-1, 1]; averaged over
each latent pixel's ``H/h x W/w`` block they give one colour per latent pixel. The map ``A [4, 3]``
minimising ``sum ||z_p A - x_p||^2`` over all latent pixels ``p`` (ordinary least squares, no
bias, as ``sd-latent-adapter`` has none) is the approximation Latent-NeRF's refinement starts
from; :func:`approximation_psnr` measures it on other latents.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from studio_latentnerf.materials import latent_to_rgb


@torch.no_grad()
def latent_pixels_and_decoded_colours(
    vae: Any, latents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z [M, 4], x [M, 3])``: every latent pixel of ``latents [N, 4, h, w]`` (scaled latents,
    as a UNet sees them) and the block average of the VAE's decode over it, in [-1, 1]."""
    scale = float(vae.config.scaling_factor)
    images = vae.decode(latents / scale).sample.clamp(-1.0, 1.0)
    pooled = F.adaptive_avg_pool2d(images, latents.shape[-2:])
    return latents.permute(0, 2, 3, 1).reshape(-1, 4), pooled.permute(0, 2, 3, 1).reshape(-1, 3)


def fit_latent_to_rgb(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The least-squares ``A [4, 3]`` (float64) of the module doc, fitted on ``latents``."""
    z, x = latent_pixels_and_decoded_colours(vae, latents)
    return torch.linalg.lstsq(z.double(), x.double()).solution


def approximation_psnr(vae: Any, latents: torch.Tensor, matrix: torch.Tensor) -> float:
    """PSNR (dB, colours in [0, 1]) of ``latent_to_rgb(z, matrix)`` against the VAE's
    block-averaged decodes of ``latents``."""
    z, x = latent_pixels_and_decoded_colours(vae, latents)
    approx = latent_to_rgb(z.double(), matrix.double())
    target = (x.double() + 1.0) / 2.0
    mse = float(((approx - target) ** 2).mean())
    return 10.0 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()
