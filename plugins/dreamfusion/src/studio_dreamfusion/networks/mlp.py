"""MLPs from tiny-cuda-nn-style configs: ``VanillaMLP`` (PyTorch) and tcnn's fused networks.

``FullyFusedMLP`` / ``CutlassMLP`` run on ``tinycudann.Network`` when it is installed and CUDA is
available; otherwise they fall back to :class:`VanillaMLP` with the same topology (hidden width,
hidden layer count, no biases, activations), computed in float32. The two backends' parameters
are laid out differently (tcnn pads widths to multiples of 16), so their checkpoints do not mix.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Literal

import attrs
import torch
from torch import nn

from studio.api import ConfigError, structure
from studio_dreamfusion.networks.encodings import resolve_backend

_K_ACT = 10.0  # tcnn's sharpness constant for Softplus / Squareplus


def _squareplus(x: torch.Tensor) -> torch.Tensor:
    u = x * _K_ACT
    return 0.5 * (u + torch.sqrt(u * u + 4.0)) / _K_ACT


#: tcnn's activation names (case-insensitive there and here) and their definitions.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "none": nn.Identity,
    "relu": lambda: nn.ReLU(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "exponential": lambda: _Lambda(torch.exp),
    "sine": lambda: _Lambda(torch.sin),
    "sigmoid": nn.Sigmoid,
    "squareplus": lambda: _Lambda(_squareplus),
    "softplus": lambda: nn.Softplus(beta=_K_ACT),  # log(1 + exp(10 x)) / 10, as tcnn
    "tanh": nn.Tanh,
}


def _softplus_slope(x: torch.Tensor) -> torch.Tensor:
    # nn.Softplus(beta=10) is linear where beta * x > 20 (its threshold).
    u = x * _K_ACT
    return torch.where(u > 20.0, torch.ones_like(x), torch.sigmoid(u))


def _squareplus_slope(x: torch.Tensor) -> torch.Tensor:
    u = x * _K_ACT
    return 0.5 * (1.0 + u / torch.sqrt(u * u + 4.0))


#: d activation(x) / dx of each of :data:`ACTIVATIONS`, written differentiably (``None``: 1).
SLOPES: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "none": None,
    "relu": lambda x: (x > 0).to(x.dtype),
    "leakyrelu": lambda x: torch.where(x > 0, 1.0, 0.01).to(x.dtype),
    "exponential": torch.exp,
    "sine": torch.cos,
    "sigmoid": lambda x: torch.sigmoid(x) * (1.0 - torch.sigmoid(x)),
    "squareplus": _squareplus_slope,
    "softplus": _softplus_slope,
    "tanh": lambda x: 1.0 - torch.tanh(x) ** 2,
}


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@attrs.define(kw_only=True)
class MLPConfig:
    """tcnn network keys (tcnn's defaults); ``otype`` VanillaMLP, FullyFusedMLP or CutlassMLP."""

    otype: str
    """The network, matched case-insensitively: ``VanillaMLP`` (PyTorch), ``FullyFusedMLP`` or
    ``CutlassMLP`` (tiny-cuda-nn when available, else a VanillaMLP of the same shape)."""
    activation: str = "ReLU"
    """Activation after each hidden layer (case-insensitive): None, ReLU, LeakyReLU,
    Exponential, Sine, Sigmoid, Squareplus, Softplus or Tanh."""
    output_activation: str = "None"
    """Activation of the output layer; the same choices as ``activation``."""
    n_neurons: int = 128
    """Width of every hidden layer (at least 1)."""
    n_hidden_layers: int = 5
    """Hidden layers (at least 0; 0 is a single linear map); no layer has a bias."""
    backend: Literal["auto", "torch", "tinycudann"] = "auto"
    """For FullyFusedMLP/CutlassMLP: ``tinycudann``, ``torch`` (VanillaMLP) or ``auto``
    (tiny-cuda-nn on CUDA when installed); VanillaMLP is always torch."""


OTYPES = ("VanillaMLP", "FullyFusedMLP", "CutlassMLP")


def _activation(name: str, path: str) -> nn.Module:
    key = name.lower()
    if key not in ACTIVATIONS:
        close = difflib.get_close_matches(key, list(ACTIVATIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"Invalid configuration: {path}: unknown activation {name!r}{hint}; choose one of "
            f"{', '.join(ACTIVATIONS)} (case-insensitive)."
        )
    return ACTIVATIONS[key]()


class VanillaMLP(nn.Module):
    """``Linear(no bias) -> act`` x ``n_hidden_layers``, then ``Linear(no bias) -> output act``.

    ``n_hidden_layers = 0`` is a single linear map. Runs in float32 with autocast disabled (mixed
    precision gave empty gradients in threestudio); the output is float32.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_neurons: int,
        n_hidden_layers: int,
        activation: str = "ReLU",
        output_activation: str = "none",
    ) -> None:
        super().__init__()
        if n_hidden_layers < 0 or n_neurons < 1:
            raise ValueError("VanillaMLP: n_hidden_layers >= 0 and n_neurons >= 1 are required")
        self.n_input_dims = n_in
        self.n_output_dims = n_out
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(n_hidden_layers):
            layers += [
                nn.Linear(width, n_neurons, bias=False),
                _activation(activation, "activation"),
            ]
            width = n_neurons
        layers.append(nn.Linear(width, n_out, bias=False))
        self.layers = nn.Sequential(*layers)
        self.output_activation = _activation(output_activation, "output_activation")
        # the slope of the activation after each Linear (the output's last), for the Jacobian;
        # read once the names are known to be valid
        self._slopes = [SLOPES[activation.lower()] for _ in range(n_hidden_layers)]
        self._slopes.append(SLOPES[output_activation.lower()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.output_activation(self.layers(x.float()))

    def forward_with_jacobian(
        self, x: torch.Tensor, jacobian: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The output ``[N, n_out]`` and its Jacobian ``[N, d, n_out]`` by the chain rule, given
        the input's Jacobian ``[N, d, n_in]`` with respect to some ``d`` variables (forward mode,
        written out, so the result is differentiable by ordinary first-order autograd)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            hidden, tangent = x.float(), jacobian.float()
            linears = [m for m in self.layers if isinstance(m, nn.Linear)]
            activations = [m for m in self.layers if not isinstance(m, nn.Linear)]
            activations.append(self.output_activation)
            for linear, activation, slope in zip(linears, activations, self._slopes, strict=True):
                pre = linear(hidden)
                tangent = linear(tangent)  # [N, d, width]: the same linear map, no bias
                if slope is not None:
                    tangent = tangent * slope(pre).unsqueeze(-2)
                hidden = activation(pre)
            return hidden, tangent


def _as_float32(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def tcnn_network(n_in: int, n_out: int, tcnn_config: dict[str, Any]) -> nn.Module:
    """``tinycudann.Network`` with a float32 output; imported only when used. Its initial weights
    come from a seed drawn from torch's generator (tcnn's own default is one fixed seed), so
    they follow the run's seed and differ between particles, as the PyTorch backend's do."""
    import tinycudann

    from studio_dreamfusion.networks.encodings import tcnn_seed

    module = tinycudann.Network(n_in, n_out, tcnn_config, seed=tcnn_seed())
    module.n_input_dims, module.n_output_dims = n_in, n_out
    module.register_forward_hook(_as_float32)
    return module


def _canonical_otype(config: dict[str, Any]) -> Any:
    """``config``'s ``otype`` spelled as in :data:`OTYPES` when it names one (tcnn matches otype
    names case-insensitively; so do we), else as a string (None when missing)."""
    otype = config.get("otype")
    if otype is None:
        return None
    return {name.lower(): name for name in OTYPES}.get(str(otype).lower(), str(otype))


def find_mlp_config_class(config: Any) -> type | None:
    """:class:`MLPConfig` when ``config`` is a mapping whose ``otype`` is one of :data:`OTYPES`,
    else None (:func:`mlp_config_class` says why)."""
    if not isinstance(config, dict) or _canonical_otype(config) not in OTYPES:
        return None
    return MLPConfig


def mlp_config_class(config: Any, path: str = "mlp") -> type:
    """:class:`MLPConfig`, the attrs config of every network ``otype``; :class:`ConfigError`
    naming ``path`` when ``config`` is not a mapping or its ``otype`` (case-insensitive) is
    missing or not one of :data:`OTYPES`."""
    if not isinstance(config, dict):
        raise ConfigError(
            f"Invalid configuration: {path} must be a mapping with an 'otype', got {config!r}."
        )
    otype = _canonical_otype(config)
    if otype not in OTYPES:
        close = difflib.get_close_matches(str(otype), list(OTYPES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        what = "a required value is missing" if otype is None else f"unknown network {otype!r}"
        raise ConfigError(
            f"Invalid configuration: {path}.otype: {what}{hint}; choose one of {', '.join(OTYPES)}."
        )
    return MLPConfig


def check_mlp_config(cfg: MLPConfig, path: str) -> None:
    """The checks of a structured MLP config beyond its types that :func:`build_mlp` makes
    (:class:`ConfigError` naming ``path``). The backend's availability is not checked here: it
    depends on the machine, not the config."""
    if cfg.n_neurons < 1:
        raise ConfigError(f"Invalid configuration: {path}.n_neurons: must be at least 1.")
    if cfg.n_hidden_layers < 0:
        raise ConfigError(f"Invalid configuration: {path}.n_hidden_layers: must be at least 0.")
    # Validate the names on every backend, so a typo fails on CPU too.
    _activation(cfg.activation, f"{path}.activation")
    _activation(cfg.output_activation, f"{path}.output_activation")
    if cfg.otype.lower() == "vanillamlp" and cfg.backend == "tinycudann":
        raise ConfigError(
            f"Invalid configuration: {path}.backend: VanillaMLP is PyTorch only; use otype "
            f"FullyFusedMLP or CutlassMLP for tiny-cuda-nn."
        )


def validate_mlp_config(config: Any, path: str) -> MLPConfig:
    """``config`` structured strictly into :class:`MLPConfig` and checked as :func:`build_mlp`
    would (every :class:`ConfigError` it raises for a config value, named by ``path``)."""
    cfg = structure(config, mlp_config_class(config, path), path)
    check_mlp_config(cfg, path)
    return cfg


def build_mlp(
    n_in: int, n_out: int, config: dict[str, Any], path: str = "mlp", *, cuda: bool | None = None
) -> nn.Module:
    """The MLP ``config`` describes; keys validated strictly (ConfigError naming ``path``).

    ``VanillaMLP`` is always PyTorch. ``FullyFusedMLP`` / ``CutlassMLP`` use tiny-cuda-nn when
    ``backend`` resolves to it (installed and CUDA, or forced) and VanillaMLP otherwise.
    """
    cfg = structure(config, mlp_config_class(config, path), path)
    otype = _canonical_otype(config)
    check_mlp_config(cfg, path)
    if otype != "VanillaMLP" and resolve_backend(cfg.backend, path, cuda) == "tinycudann":
        tcnn_config = {
            "otype": otype,
            "activation": cfg.activation,
            "output_activation": cfg.output_activation,
            "n_neurons": cfg.n_neurons,
            "n_hidden_layers": cfg.n_hidden_layers,
        }
        return tcnn_network(n_in, n_out, tcnn_config)
    return VanillaMLP(
        n_in,
        n_out,
        cfg.n_neurons,
        cfg.n_hidden_layers,
        activation=cfg.activation,
        output_activation=cfg.output_activation,
    )


__all__ = [
    "ACTIVATIONS",
    "MLPConfig",
    "VanillaMLP",
    "build_mlp",
    "check_mlp_config",
    "find_mlp_config_class",
    "mlp_config_class",
    "tcnn_network",
    "validate_mlp_config",
]
