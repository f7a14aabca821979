"""Backgrounds: ``neural-environment-map``, ``solid-color``, ``textured``."""

from __future__ import annotations

import math
import random
from typing import Any, Optional

import attrs
import torch
import torch.nn.functional as F

from studio.api import BaseBackground
from studio_dreamfusion.activations import ValidatesActivations, get_activation
from studio_dreamfusion.networks import defaults
from studio_dreamfusion.networks.configs import NetworkConfigs
from studio_dreamfusion.networks.encodings import (
    build_encoding,
)
from studio_dreamfusion.networks.mlp import build_mlp


def _random_colors(dirs: torch.Tensor, channels: int) -> torch.Tensor:
    """One random colour per image ``[B, 1, 1, C]`` (broadcasts over the image)."""
    return torch.rand(dirs.shape[0], *([1] * (dirs.dim() - 2)), channels, device=dirs.device)


class NeuralEnvironmentMap(NetworkConfigs, ValidatesActivations, BaseBackground):
    """Colour of a direction from an MLP on its spherical-harmonics encoding.

    ``random_aug``: in training, with probability ``random_aug_prob`` the whole background of the
    batch is replaced by a random colour, one per image. ``eval_color``: constant colour in eval.
    """

    @attrs.define(kw_only=True)
    class Config(BaseBackground.Config):
        n_output_dims: int = 3
        """Colour channels (3 for RGB, 4 for Stable Diffusion latents)."""
        color_activation: str = "sigmoid"
        """Activation of the MLP output into colours (e.g. ``sigmoid``, ``scale_-11_01``)."""
        dir_encoding_config: dict[str, Any] = attrs.Factory(defaults.spherical_harmonics)
        """Encoding of the ray direction (mapped to ``[0, 1]^3``): ``otype`` (e.g.
        SphericalHarmonics) and its keys."""
        mlp_network_config: dict[str, Any] = attrs.Factory(
            lambda: defaults.mlp("VanillaMLP", 16, 2)
        )
        """The colour MLP: ``otype`` (VanillaMLP, FullyFusedMLP, CutlassMLP) and its keys."""
        random_aug: bool = False
        """Training: sometimes replace the background by a random colour, one per image."""
        random_aug_prob: float = 0.5
        """Chance of that replacement per training call, in [0, 1]."""
        eval_color: Optional[tuple[float, ...]] = None
        """Constant colour (``n_output_dims`` values) in validation and test; null: the MLP's."""

    encoding_fields = {"dir_encoding_config": 3}
    mlp_fields = ("mlp_network_config",)

    def configure(self) -> None:
        cfg = self.cfg
        self.encoding = build_encoding(
            3, cfg.dir_encoding_config, f"{self.config_path}.dir_encoding_config"
        )
        self.network = build_mlp(
            self.encoding.n_output_dims,
            cfg.n_output_dims,
            cfg.mlp_network_config,
            f"{self.config_path}.mlp_network_config",
        )
        self._activation = get_activation(
            cfg.color_activation, f"{self.config_path}.color_activation"
        )

    def graph_state(self) -> tuple:
        """No host state (``random_aug``, drawn on the host per call, is refused)."""
        return ()

    def graph_blocker(self) -> Optional[str]:
        if self.cfg.random_aug:
            return f"{self.config_path}.random_aug draws on the host in every training call"
        return super().graph_blocker()

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if not self.training and cfg.eval_color is not None:
            color = torch.tensor(cfg.eval_color, device=dirs.device, dtype=dirs.dtype)
            return color.expand(*dirs.shape[:-1], cfg.n_output_dims)
        encoded = self.encoding(((dirs.reshape(-1, 3) + 1.0) / 2.0).clamp(0.0, 1.0))
        color = self._activation(self.network(encoded)).reshape(*dirs.shape[:-1], cfg.n_output_dims)
        if self.training and cfg.random_aug and random.random() < cfg.random_aug_prob:
            color = color * 0 + _random_colors(dirs, cfg.n_output_dims)
        return color


class SolidColor(BaseBackground):
    """A constant colour (a buffer, or a parameter when ``learned``)."""

    @attrs.define(kw_only=True)
    class Config(BaseBackground.Config):
        n_output_dims: int = 3
        """Colour channels (must match the length of ``color``)."""
        color: tuple[float, ...] = (1.0, 1.0, 1.0)
        """The background colour (``n_output_dims`` values; RGB in [0, 1])."""
        learned: bool = False
        """Train the colour as a parameter (false: a fixed buffer)."""
        random_aug: bool = False
        """Training: sometimes replace the background by a random colour, one per image."""
        random_aug_prob: float = 0.5
        """Chance of that replacement per training call, in [0, 1]."""

    def configure(self) -> None:
        color = torch.tensor(self.cfg.color, dtype=torch.float32)
        if color.numel() != self.cfg.n_output_dims:
            from studio.api import ConfigError

            raise ConfigError(
                f"{self.config_path}.color has {color.numel()} values but n_output_dims is "
                f"{self.cfg.n_output_dims}."
            )
        if self.cfg.learned:
            self.env_color = torch.nn.Parameter(color)
        else:
            self.register_buffer("env_color", color)

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        color = self.env_color.to(dirs.dtype).expand(*dirs.shape[:-1], self.cfg.n_output_dims)
        if self.training and self.cfg.random_aug and random.random() < self.cfg.random_aug_prob:
            color = color * 0 + _random_colors(dirs, self.cfg.n_output_dims)
        return color


class Textured(ValidatesActivations, BaseBackground):
    """A learnable texture on the sphere of directions (spherical UV, bilinear, reflection padding)."""

    @attrs.define(kw_only=True)
    class Config(BaseBackground.Config):
        n_output_dims: int = 3
        """Colour channels of the texture (3 for RGB, 4 for Stable Diffusion latents)."""
        height: int = 64
        """Texture height in texels (the azimuth axis)."""
        width: int = 64
        """Texture width in texels (the polar-angle axis)."""
        color_activation: str = "sigmoid"
        """Activation of the texture values into colours (e.g. ``sigmoid``, ``none``)."""

    def configure(self) -> None:
        cfg = self.cfg
        self.texture = torch.nn.Parameter(torch.randn(1, cfg.n_output_dims, cfg.height, cfg.width))
        self._activation = get_activation(
            cfg.color_activation, f"{self.config_path}.color_activation"
        )

    @staticmethod
    def spherical_uv(dirs: torch.Tensor) -> torch.Tensor:
        """``u = atan2(sqrt(x^2+y^2), z)/pi`` (polar), ``v = atan2(y, x)/(2 pi) + 0.5``; in [0, 1]."""
        x, y, z = dirs.unbind(-1)
        u = torch.atan2(torch.sqrt(x * x + y * y), z) / math.pi
        v = torch.atan2(y, x) / (2 * math.pi) + 0.5
        return torch.stack([u, v], dim=-1)

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        uv = self.spherical_uv(dirs.reshape(-1, 3)) * 2.0 - 1.0
        sampled = F.grid_sample(
            self.texture,
            uv.reshape(1, 1, -1, 2),
            mode="bilinear",
            padding_mode="reflection",
            align_corners=False,
        )
        color = sampled.reshape(self.cfg.n_output_dims, -1).t()
        return self._activation(color).reshape(*dirs.shape[:-1], self.cfg.n_output_dims)
