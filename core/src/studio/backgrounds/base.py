"""Backgrounds: unit ray directions ``[B, H, W, 3]`` -> colour ``[B, H, W, C]`` behind the object."""

from __future__ import annotations

import torch

from studio.base import BaseModule


class BaseBackground(BaseModule):
    config_path = "system.background"

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
