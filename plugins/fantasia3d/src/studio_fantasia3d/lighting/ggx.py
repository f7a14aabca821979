"""The microfacet terms shared by the prefilter, the split-sum LUT and the shading.

The specular BRDF is Cook-Torrance with

* the GGX (Trowbridge-Reitz) normal distribution, ``alpha = roughness**2``:
  ``D(h) = alpha**2 / (pi * ((n.h)**2 * (alpha**2 - 1) + 1)**2)``;
* Smith's height-correlated masking-shadowing for GGX (Heitz 2014), folded with the
  ``1 / (4 n.l n.v)`` denominator into the visibility term
  ``V = 0.5 / (n.l * sqrt((n.v)**2 (1 - alpha**2) + alpha**2) + n.v * sqrt((n.l)**2 (1 - alpha**2) + alpha**2))``,
  so that ``f(l, v) = D * V * F``;
* Schlick's Fresnel ``F = F0 + (1 - F0) * (1 - v.h)**5``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def ggx_distribution(n_dot_h: Tensor, alpha: Tensor | float) -> Tensor:
    """GGX NDF ``D`` for the cosine between normal and half vector (``alpha = roughness**2``)."""
    a2 = alpha * alpha
    denom = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    return a2 / (math.pi * denom * denom)


def smith_visibility(n_dot_l: Tensor, n_dot_v: Tensor, alpha: Tensor | float) -> Tensor:
    """Height-correlated Smith ``G2 / (4 n.l n.v)`` for GGX; inputs are clamped cosines (> 0)."""
    a2 = alpha * alpha
    lam_v = n_dot_l * torch.sqrt(n_dot_v * n_dot_v * (1.0 - a2) + a2)
    lam_l = n_dot_v * torch.sqrt(n_dot_l * n_dot_l * (1.0 - a2) + a2)
    return 0.5 / (lam_v + lam_l).clamp_min(1e-12)


def schlick_weight(v_dot_h: Tensor) -> Tensor:
    """Schlick's ``(1 - v.h)**5``: ``F = F0 * (1 - w) + w`` (per channel)."""
    return (1.0 - v_dot_h).clamp(0.0, 1.0) ** 5


def ggx_cos_theta(u: Tensor, alpha: Tensor | float) -> Tensor:
    """``cos(theta_h)`` at CDF value ``u`` in [0, 1) when half vectors are drawn with density
    ``D(h) (n.h)`` (the GGX importance sampling map): ``cos**2 = (1 - u) / (1 + (alpha**2 - 1) u)``."""
    a2 = alpha * alpha
    return torch.sqrt((1.0 - u) / (1.0 + (a2 - 1.0) * u))


def reflect(direction: Tensor, normal: Tensor) -> Tensor:
    """Mirror ``direction`` (pointing away from the surface) about ``normal``: ``2 (n.d) n - d``."""
    return 2.0 * (direction * normal).sum(-1, keepdim=True) * normal - direction
