"""Shared density helpers: the initial density bias ("blob") and normals from a density field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import torch
import torch.nn.functional as F

from studio.api import ConfigError

DensityBias = Union[float, str]


def density_bias(points: torch.Tensor, kind: DensityBias, scale: float, std: float) -> torch.Tensor:
    """Added to the raw density before activation; ``[N, 1]``.

    ``blob_dreamfusion``: ``scale * exp(-|x|^2 / (2 std^2))``; ``blob_magic3d`` (alias ``blob``):
    ``scale * (1 - |x| / std)``; a number: constant.
    Differentiable in ``points`` (so analytic normals see the blob, as in the reference's
    implicit-volume); pass detached points for a bias without gradient.
    """
    return _bias_and_gradient(points, kind, scale, std, with_gradient=False)[0]


def density_bias_with_gradient(
    points: torch.Tensor, kind: DensityBias, scale: float, std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`density_bias` ``[N, 1]`` and its gradient in ``points`` ``[N, 3]``, written out."""
    bias, gradient = _bias_and_gradient(points, kind, scale, std, with_gradient=True)
    assert gradient is not None
    return bias, gradient


def _bias_and_gradient(
    points: torch.Tensor, kind: DensityBias, scale: float, std: float, with_gradient: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(kind, (int, float)):
        constant = torch.full_like(points[..., :1], float(kind))
        return constant, torch.zeros_like(points) if with_gradient else None
    norm2 = (points**2).sum(-1, keepdim=True)
    if kind == "blob_dreamfusion":
        bias = scale * torch.exp(-0.5 * norm2 / std**2)
        return bias, -bias * points / std**2 if with_gradient else None
    if kind in ("blob_magic3d", "blob"):
        norm = torch.sqrt(norm2 + 1e-20)
        bias = scale * (1.0 - norm / std)
        return bias, -scale / std * points / norm if with_gradient else None
    raise ConfigError(
        f"system.geometry.density_bias: unknown value {kind!r}; use blob_magic3d, "
        f"blob_dreamfusion or a number."
    )


def check_density_bias(kind: DensityBias, path: str) -> None:
    """``kind`` is a number or a known blob (ConfigError naming ``path`` otherwise)."""
    if isinstance(kind, (int, float)) or kind in ("blob_dreamfusion", "blob_magic3d", "blob"):
        return
    raise ConfigError(
        f"{path}: unknown value {kind!r}; use blob_magic3d, blob_dreamfusion or a number."
    )


def finite_difference_normal(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    points: torch.Tensor,
    density: torch.Tensor,
    eps: float,
    central: bool,
) -> torch.Tensor:
    """Unit normals ``-grad(density)`` by forward (reference default) or central differences."""
    offsets = torch.eye(3, device=points.device, dtype=points.dtype) * eps
    plus = density_fn((points[:, None, :] + offsets).reshape(-1, 3)).reshape(-1, 3)
    if central:
        minus = density_fn((points[:, None, :] - offsets).reshape(-1, 3)).reshape(-1, 3)
        grad = 0.5 * (plus - minus) / eps
    else:
        grad = (plus - density.reshape(-1, 1)) / eps
    return F.normalize(-grad, dim=-1)


def analytic_normal(
    density: torch.Tensor, points: torch.Tensor, create_graph: bool
) -> torch.Tensor:
    """Unit normals ``-d density / d x`` by autograd (``points`` must require grad)."""
    (grad,) = torch.autograd.grad(
        density, points, grad_outputs=torch.ones_like(density), create_graph=create_graph
    )
    return F.normalize(-grad, dim=-1)
