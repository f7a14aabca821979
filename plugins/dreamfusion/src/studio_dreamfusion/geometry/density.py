"""Shared density helpers: the initial density bias ("blob") and normals from a density field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import torch
import torch.nn.functional as F

from studio.errors import ConfigError

DensityBias = Union[float, str]


def density_bias(points: torch.Tensor, kind: DensityBias, scale: float, std: float) -> torch.Tensor:
    """Added to the raw density before activation; ``[N, 1]``.

    ``blob_dreamfusion``: ``scale * exp(-|x|^2 / (2 std^2))``; ``blob_magic3d`` (alias ``blob``):
    ``scale * (1 - |x| / std)``; a number: constant.
    """
    if isinstance(kind, (int, float)):
        return torch.full_like(points[..., :1], float(kind))
    norm2 = (points.detach() ** 2).sum(-1, keepdim=True)
    if kind == "blob_dreamfusion":
        return scale * torch.exp(-0.5 * norm2 / std**2)
    if kind in ("blob_magic3d", "blob"):
        return scale * (1.0 - torch.sqrt(norm2 + 1e-20) / std)
    raise ConfigError(
        f"system.geometry.density_bias: unknown value {kind!r}; use blob_magic3d, "
        f"blob_dreamfusion or a number."
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
