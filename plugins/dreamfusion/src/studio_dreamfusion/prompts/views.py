"""View directions: which of the four view prompts (side, front, back, overhead) a camera gets.

The reference's rules, in its order (later matches overwrite earlier ones, so overhead wins):

=====  ========  ==================================================  =============================
index  name      condition (azimuth shifted to [-180, 180))          prompt (default / front style)
=====  ========  ==================================================  =============================
0      side      always                                              ``{p}, side view`` /
                                                                     ``side view of {p}``
1      front     ``-front_threshold < azimuth < front_threshold``    ``{p}, front view`` /
                                                                     ``front view of {p}``
2      back      ``azimuth > 180 - back_threshold`` or               ``{p}, back view`` /
                 ``azimuth < -180 + back_threshold``                 ``backside view of {p}``
3      overhead  ``elevation > overhead_threshold``                  ``{p}, overhead view`` /
                                                                     ``overhead view of {p}``
=====  ========  ==================================================  =============================

All comparisons are strict: an azimuth of exactly 45 degrees is a side view, an elevation of
exactly 60 degrees is not overhead. Angles are in degrees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch

#: Direction names in index order (the order of ``text_embeddings_vd``).
DIRECTION_NAMES = ("side", "front", "back", "overhead")

_TEMPLATES = {  # name -> (default template, "view_dependent_prompt_front" template)
    "side": ("{}, side view", "side view of {}"),
    "front": ("{}, front view", "front view of {}"),
    "back": ("{}, back view", "backside view of {}"),
    "overhead": ("{}, overhead view", "overhead view of {}"),
}

Condition = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ViewThresholds:
    """Angles (degrees) that split the sphere of cameras into views."""

    front: float = 45.0
    back: float = 45.0
    overhead: float = 60.0


@dataclass(frozen=True)
class ViewDirection:
    """One view: its name, prompt and which cameras it claims (``condition(elev, azi, dist)``)."""

    name: str
    prompt: str
    negative_prompt: str
    condition: Condition


def shift_azimuth_deg(azimuth: torch.Tensor) -> torch.Tensor:
    """Azimuth (degrees) wrapped into [-180, 180): 180 -> -180, 360 -> 0, -190 -> 170."""
    return torch.remainder(azimuth + 180.0, 360.0) - 180.0


def view_prompt(prompt: str, name: str, front_style: bool) -> str:
    """The reference's template for view ``name`` filled with ``prompt``."""
    return _TEMPLATES[name][1 if front_style else 0].format(prompt)


def view_conditions(thresholds: ViewThresholds) -> dict[str, Condition]:
    """The selection rule of each direction (elevation, azimuth in degrees; distance unused)."""

    def side(elev: torch.Tensor, azi: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(elev, dtype=torch.bool)

    def front(elev: torch.Tensor, azi: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        a = shift_azimuth_deg(azi)
        return (a > -thresholds.front) & (a < thresholds.front)

    def back(elev: torch.Tensor, azi: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        a = shift_azimuth_deg(azi)
        return (a > 180.0 - thresholds.back) | (a < -180.0 + thresholds.back)

    def overhead(elev: torch.Tensor, azi: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        return elev > thresholds.overhead

    return {"side": side, "front": front, "back": back, "overhead": overhead}


def build_directions(
    prompt: str,
    negative_prompt: str,
    thresholds: ViewThresholds,
    front_style: bool = False,
    manual: Optional[dict[str, Optional[str]]] = None,
) -> list[ViewDirection]:
    """The four directions in index order; a non-empty ``manual[name]`` replaces that template."""
    manual = manual or {}
    conditions = view_conditions(thresholds)
    return [
        ViewDirection(
            name=name,
            prompt=manual.get(name) or view_prompt(prompt, name, front_style),
            negative_prompt=negative_prompt,
            condition=conditions[name],
        )
        for name in DIRECTION_NAMES
    ]


def direction_indices(
    directions: list[ViewDirection],
    elevation: torch.Tensor,
    azimuth: torch.Tensor,
    camera_distances: torch.Tensor,
) -> torch.Tensor:
    """Per-camera index into ``directions`` (long ``[B]``); later matching directions win."""
    index = torch.zeros(elevation.shape, dtype=torch.long, device=elevation.device)
    for i, direction in enumerate(directions):
        index[direction.condition(elevation, azimuth, camera_distances)] = i
    return index
