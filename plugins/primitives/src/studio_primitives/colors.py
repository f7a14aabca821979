"""The colours of the data set: name -> linear RGB albedo in ``[0, 1]``."""

from __future__ import annotations

import torch

from studio.api import ConfigError

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.05, 0.05),
    "green": (0.05, 0.75, 0.1),
    "blue": (0.05, 0.15, 0.9),
    "yellow": (0.95, 0.85, 0.05),
    "orange": (0.95, 0.4, 0.02),
    "purple": (0.5, 0.08, 0.75),
    "white": (0.95, 0.95, 0.95),
    "black": (0.04, 0.04, 0.04),
}


def color_rgb(name: str) -> torch.Tensor:
    """The albedo of colour ``name`` as a float tensor ``[3]``.

    Unknown names raise :class:`ConfigError` listing the known colours.
    """
    if name not in COLORS:
        raise ConfigError(f"Unknown colour {name!r}. Known colours: {', '.join(COLORS)}.")
    return torch.tensor(COLORS[name], dtype=torch.float32)
