"""Named activations used in configs (``density_activation: softplus``, ``albedo_activation: ...``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from studio.api import ConfigError


class _TruncExp(torch.autograd.Function):
    """exp(x) forward; the backward uses exp(min(x, 15)) so huge densities do not blow up."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def _srgb(x: torch.Tensor) -> torch.Tensor:
    return torch.where(
        x > 0.0031308, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * x
    )


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x,
    "lin2srgb": _srgb,
    "exp": torch.exp,
    "shifted_exp": lambda x: torch.exp(x - 1.0),
    "trunc_exp": trunc_exp,
    "shifted_trunc_exp": lambda x: trunc_exp(x - 1.0),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "shifted_softplus": lambda x: F.softplus(x - 1.0),
    "scale_-11_01": lambda x: x * 0.5 + 0.5,
    "softplus": F.softplus,
    "relu": F.relu,
}


def get_activation(
    name: str | None, path: str = "activation"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation called ``name`` (``None`` means identity); ConfigError for unknown names."""
    if name is None:
        return ACTIVATIONS["none"]
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]
    fn = getattr(F, name, None)
    if callable(fn):
        return fn
    raise ConfigError(
        f"{path}: unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)} or a "
        f"torch.nn.functional name."
    )


def _softplus_slope(x: torch.Tensor) -> torch.Tensor:
    # F.softplus is linear above its threshold (20): slope 1 there, sigmoid(x) below. In float32
    # and float16 sigmoid is already exactly 1, with a zero gradient, from x = 17 on (in float64
    # within 1e-9), so one op gives both branches (a launch-bound step pays per op).
    return torch.sigmoid(x)


def _sigmoid_slope(x: torch.Tensor) -> torch.Tensor:
    y = torch.sigmoid(x)
    return y * (1.0 - y)


#: d activation(x) / dx, differentiable, for the activations a density may use. ``trunc_exp``
#: takes the slope its backward uses (exp of x clamped at 15), as autograd would.
SLOPES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": torch.ones_like,
    "exp": torch.exp,
    "shifted_exp": lambda x: torch.exp(x - 1.0),
    "trunc_exp": lambda x: torch.exp(x.clamp(max=15.0)),
    "shifted_trunc_exp": lambda x: torch.exp((x - 1.0).clamp(max=15.0)),
    "sigmoid": _sigmoid_slope,
    "tanh": lambda x: 1.0 - torch.tanh(x) ** 2,
    "shifted_softplus": lambda x: _softplus_slope(x - 1.0),
    "scale_-11_01": lambda x: torch.full_like(x, 0.5),
    "softplus": _softplus_slope,
    "relu": lambda x: (x > 0).to(x.dtype),
}


def get_activation_slope(name: str | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The derivative of the activation ``name`` (see :data:`SLOPES`), or None if not known."""
    return SLOPES["none"] if name is None else SLOPES.get(name)


def check_activation_fields(cfg: Any, path: str) -> None:
    """Every ``*_activation`` field of the attrs config ``cfg`` names a known activation."""
    for field in attrs.fields(type(cfg)):
        value = getattr(cfg, field.name)
        if field.name.endswith("_activation") and (value is None or isinstance(value, str)):
            get_activation(value, f"{path}.{field.name}")


class ValidatesActivations:
    """Mixin: ``validate_config`` also checks the config's ``*_activation`` names, so an unknown
    one is refused when the run's config is resolved, before anything is created."""

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)  # type: ignore[misc]
        check_activation_fields(cfg, path)
