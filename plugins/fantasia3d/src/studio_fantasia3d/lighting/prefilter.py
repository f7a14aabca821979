"""Prefiltering an environment map with rotationally symmetric lobes (diffuse and GGX).

Every filter here is a kernel ``k(cos gamma)`` of the angle ``gamma`` between the output
direction and the incoming one, normalised over the sphere:
``out(r) = sum_l k(r.l) L(l) dw(l) / sum_l k(r.l) dw(l)`` with ``dw`` the texels' exact solid
angles, so a constant map stays exactly constant. On an equirectangular map, all texels of an
output row see the same kernel up to a shift in azimuth, so each row is a sum over input rows of
circular convolutions along the azimuth, done with FFTs: ``O(H^2 W log W)`` instead of ``O(H^2 W^2)``.

* Diffuse: ``k = max(cos gamma, 0)``, giving the irradiance divided by pi,
  ``E(n) / pi = (1 / pi) int L(l) max(n.l, 0) dl``.
* Specular, roughness ``r`` (``alpha = r**2``): the split-sum's first term under its usual
  ``n = v = r`` assumption, ``k = D(h) max(r.l, 0)`` with ``h`` halfway between ``r`` and ``l``,
  i.e. ``r.h = sqrt((1 + r.l) / 2)`` (Karis 2013's ``n.l``-weighted estimator in integral form).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from studio_fantasia3d.lighting.equirect import downsample, row_polar_angles, row_solid_angles

Kernel = Callable[[Tensor], Tensor]


def convolve(image: Tensor, kernel: Kernel, *, chunk_elements: int = 1 << 22) -> Tensor:
    """``image [H, W, C]`` filtered with the normalised radial ``kernel(cos gamma)``, same shape.

    Works in float64; ``chunk_elements`` bounds the kernel block held at once (``rows x H x W``)."""
    height, width, _ = image.shape
    source = image.to(torch.float64)
    theta = row_polar_angles(height).to(image.device)
    solid = row_solid_angles(height, width).to(image.device)
    cos_shift = torch.cos(
        torch.arange(width, dtype=torch.float64, device=image.device) * (2 * math.pi / width)
    )
    spectrum = torch.fft.rfft(source, dim=1).permute(1, 0, 2)  # [M, H_in, C]
    rows = max(1, chunk_elements // (height * width))
    out = []
    for start in range(0, height, rows):
        t_out = theta[start : start + rows, None, None]
        cos_gamma = torch.cos(t_out) * torch.cos(theta)[None, :, None] + (
            torch.sin(t_out) * torch.sin(theta)[None, :, None] * cos_shift
        )
        weights = kernel(cos_gamma) * solid[None, :, None]  # [rows, H_in, W]
        norm = weights.sum(dim=(1, 2))
        kernel_spectrum = torch.fft.rfft(weights, dim=2).permute(2, 0, 1)  # [M, rows, H_in]
        filtered = torch.matmul(kernel_spectrum, spectrum.to(kernel_spectrum.dtype))  # [M, rows, C]
        block = torch.fft.irfft(filtered.permute(1, 0, 2), n=width, dim=1)
        out.append(block / norm[:, None, None])
    return torch.cat(out, dim=0).to(image.dtype)


def cosine_kernel(cos_gamma: Tensor) -> Tensor:
    """The clamped cosine ``max(cos gamma, 0)`` (Lambertian irradiance)."""
    return cos_gamma.clamp_min(0.0)


def ggx_kernel(roughness: float) -> Kernel:
    """``D(h) max(cos gamma, 0)`` for GGX with ``alpha = roughness**2``, up to a constant."""
    a2 = roughness**4

    def kernel(cos_gamma: Tensor) -> Tensor:
        n_dot_h2 = (1.0 + cos_gamma).clamp_min(0.0) * 0.5
        denom = n_dot_h2 * (a2 - 1.0) + 1.0
        return cos_gamma.clamp_min(0.0) / (denom * denom)

    return kernel


def level_width(roughness: float, base_width: int, min_width: int = 128) -> int:
    """The map width at which roughness ``r`` is filtered: a power of two with texels at most
    ``0.6 alpha`` wide (about half the lobe's half-width at half-maximum ``1.3 alpha`` around the
    reflection), between ``min_width`` and ``base_width``."""
    alpha = max(roughness * roughness, 1e-6)
    width = 2 ** math.ceil(math.log2(2 * math.pi / (0.6 * alpha)))
    return int(min(base_width, max(min_width, width)))


def irradiance_map(image: Tensor, width: int) -> Tensor:
    """``E / pi`` of ``image [H, W, 3]`` as a ``[width / 2, width, 3]`` map (``W / width`` a power of two)."""
    return convolve(downsample(image, image.shape[1] // width), cosine_kernel)


def specular_levels(image: Tensor, roughness_levels: tuple[float, ...]) -> list[Tensor]:
    """The GGX-prefiltered maps of ``image [H, W, 3]``, one per roughness, each at
    :func:`level_width`."""
    levels = []
    for roughness in roughness_levels:
        width = level_width(roughness, image.shape[1])
        levels.append(convolve(downsample(image, image.shape[1] // width), ggx_kernel(roughness)))
    return levels
