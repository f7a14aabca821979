"""SJC's two scene losses (reference §5.3), as pure functions.

* Emptiness: ``mean_i log(1 + scale * w_i)`` over the per-sample volume-rendering weights of
  every ray of the batch; it pushes low weights to zero (empty space) while costing little for
  the few large weights of a surface. The mean runs over the samples the renderer returns, which
  are the same on both backends (see ``studio_dreamfusion.renderers.nerf_volume``).
* Centre depth: with ``d = depth + 10 * (1 - opacity)`` (empty pixels count as far away), ``x =
  mean(d over the central box) - mean(d over the rest) + 1e-12`` and ``loss = sign(x) *
  log(|x|)``: the object is drawn to the middle of the image, closer than its surroundings.
"""

from __future__ import annotations

import torch


def emptiness_loss(weights: torch.Tensor, scale: float) -> torch.Tensor:
    """``mean(log(1 + scale * w))`` over all samples (``weights`` of any shape)."""
    return torch.log1p(scale * weights).mean()


def center_box(size: int, ratio: float) -> slice:
    """The central ``ratio`` of ``size`` pixels (at least one)."""
    inner = max(1, round(size * ratio))
    start = (size - inner) // 2
    return slice(start, start + inner)


def center_depth_loss(
    depth: torch.Tensor, opacity: torch.Tensor, center_ratio: float
) -> torch.Tensor:
    """``sign(x) * log(|x|)`` with ``x`` the centre-minus-border mean of ``depth + 10 * (1 -
    opacity)`` over the whole batch (``depth``, ``opacity``: ``[B, H, W, 1]``).

    The reference writes ``log(x)``, which is NaN once the centre is nearer than the border
    (``x < 0``, the state the loss asks for); the magnitude's log keeps it finite there.
    """
    far = depth + 10.0 * (1.0 - opacity)
    rows, cols = center_box(far.shape[1], center_ratio), center_box(far.shape[2], center_ratio)
    center = far[:, rows, cols]
    border_count = far.numel() - center.numel()
    border_mean = (far.sum() - center.sum()) / max(border_count, 1)
    x = center.mean() - border_mean + 1e-12
    return torch.sign(x) * torch.log(x.abs())
