"""Regularisers shared by every NeRF-based system (the reference's definitions)."""

from __future__ import annotations

import torch


def orientation_loss(
    weights: torch.Tensor, normals: torch.Tensor, dirs: torch.Tensor, opacity: torch.Tensor
) -> torch.Tensor:
    """``sum(w.detach() * max(0, n . d)^2) / #pixels(opacity > 0)``: normals facing away from the
    camera (along the ray) are penalised, weighted by the sample's (detached) weight."""
    facing = (normals * dirs).sum(-1, keepdim=True).clamp(min=0.0)
    visible = (opacity > 0).sum().clamp(min=1)
    return (weights.detach().reshape(-1, 1) * facing**2).sum() / visible


def sparsity_loss(opacity: torch.Tensor) -> torch.Tensor:
    """``mean(sqrt(opacity^2 + 0.01))``."""
    return torch.sqrt(opacity**2 + 0.01).mean()


def opaque_loss(opacity: torch.Tensor) -> torch.Tensor:
    """Binary entropy of the clamped opacity: pushes every pixel to fully opaque or empty.

    Written out (not ``F.binary_cross_entropy``) so it is stable under autocast."""
    o = opacity.float().clamp(1e-3, 1.0 - 1e-3)
    return (-(o * torch.log(o) + (1.0 - o) * torch.log(1.0 - o))).mean()


def z_variance_loss(z_variance: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """Mean depth variance along rays of mostly opaque pixels (``opacity > 0.5``; HiFA); 0 when
    there are none. No host sync (a captured step may hold it)."""
    mask = (opacity > 0.5).to(z_variance.dtype)
    return (z_variance * mask).sum() / mask.sum().clamp(min=1.0)
