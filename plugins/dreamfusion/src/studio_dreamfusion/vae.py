"""Decoding latents with a diffusers VAE (no guidance, no loading): shared by the
``stable-diffusion`` guidance and :mod:`studio_dreamfusion.latent_decoder`.

:func:`decode_latents`: the latent map ``[B, H, W, 4]`` is resized bilinearly to ``latent_size``,
divided by the VAE's scaling factor, decoded in the VAE's dtype with autocast off, mapped from
[-1, 1] to [0, 1] and resized to ``out_size`` (default ``H x W``; area averaging when shrinking).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F


@torch.no_grad()
def decode_latents(
    vae: Any, latents: torch.Tensor, latent_size: int, out_size: Optional[tuple[int, int]] = None
) -> torch.Tensor:
    """RGB ``[B, h, w, 3]`` in [0, 1] of latent renders ``[B, H, W, 4]`` (see the module doc);
    ``out_size`` ``(h, w)`` defaults to ``(H, W)``."""
    height, width = out_size or latents.shape[1:3]
    dtype = next(vae.parameters()).dtype
    maps = latents.permute(0, 3, 1, 2).float()
    maps = F.interpolate(maps, (latent_size, latent_size), mode="bilinear", align_corners=False)
    with torch.autocast(latents.device.type, enabled=False):
        scaled = maps / float(vae.config.scaling_factor)
        image = vae.decode(scaled.to(dtype)).sample.float()
    image = (image * 0.5 + 0.5).clamp(0.0, 1.0)
    if image.shape[-2:] != (height, width):
        shrink = image.shape[-2] >= height and image.shape[-1] >= width
        mode = "area" if shrink else "bilinear"
        extra = {} if shrink else {"align_corners": False}
        image = F.interpolate(image, (height, width), mode=mode, **extra)
    return image.permute(0, 2, 3, 1)
