"""Does SDS through an autoencoder's encoder carry colour? :func:`colour_pullback` measures it.

Latent-space SDS reaches a render through the encoder's transposed Jacobian. For Stable
Diffusion's encoder a latent colour change pulls back to (roughly) that colour in pixels; a small
encoder trained on reconstruction alone can pull it back to high-frequency noise whose mean colour
is wrong, and a smooth 3D field then drifts to grey or black whatever the prompt
(docs/primitives.md). The training script reports this check for the SD form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from studio_primitives.colors import color_rgb

#: Colours probed by default: the three primaries of the vocabulary.
PROBE_COLOURS = ("red", "green", "blue")

Encode = Callable[[torch.Tensor], torch.Tensor]


def vae_means(vae: Any) -> Encode:
    """Images ``[N, 3, H, W]`` in [0, 1] -> the posterior means of ``vae`` (as SDS encodes)."""
    return lambda images: vae.encode(images * 2.0 - 1.0).latent_dist.mean


def colour_pullback(
    encode: Encode,
    size: int,
    colours: Sequence[str] = PROBE_COLOURS,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Pull back, at a grey image, the latent change towards each colour.

    For colour ``c``: ``d = encode(grey/2 + c/2) - encode(grey)`` and ``g = J^T d`` with ``J`` the
    encoder's Jacobian at the grey ``size x size`` image. Returns ``mean_rgb`` (per colour, the
    mean of ``g`` over pixels, RGB), ``noise`` (per colour, the mean ``|g|``), and ``aligned``:
    the fraction of colours whose own dominant channel has the largest mean component, i.e. for
    which a smooth field following ``-grad`` turns towards the colour.
    """
    grey = torch.full((1, 3, size, size), 0.5, device=device)
    mean_rgb: dict[str, list[float]] = {}
    noise: dict[str, float] = {}
    aligned = 0
    for name in colours:
        colour = color_rgb(name).to(device).view(1, 3, 1, 1).expand_as(grey)
        with torch.no_grad():
            direction = encode(0.5 * grey + 0.5 * colour) - encode(grey)
        image = grey.clone().requires_grad_(True)
        (encode(image) * direction).sum().backward()
        grad = image.grad[0]
        mean = grad.mean(dim=(1, 2)).cpu()
        mean_rgb[name] = [float(v) for v in mean]
        noise[name] = float(grad.abs().mean())
        wanted = int(torch.argmax(color_rgb(name) - color_rgb(name).mean()))
        aligned += int(torch.argmax(mean)) == wanted
    return {"mean_rgb": mean_rgb, "noise": noise, "aligned": aligned / len(colours)}
