"""The geometry stage's Lambertian guidance input (``geometry_input: lambert``, ours).

A model that never saw a normal map (the primitives ones) sees the mesh as its training renders
showed objects: one colour, Lambert-shaded by the view's light, over a background::

    image = opacity * albedo * (AMBIENT + DIFFUSE * max(0, n . l)) + (1 - opacity) * background

with ``n = 2 comp_normal - 1``. The light ``l`` is either ``distant`` (``normalize(light_position)``
for every pixel) or ``point`` (``normalize(light_position - x)`` at the pixel's surface point
``x``, as the primitives data set renders). The background is ``grey`` (0.5) or ``random``: one
uniform RGB colour per view at least :data:`MIN_BACKGROUND_DISTANCE` from the albedo, the
primitives data set's backgrounds (an object is never drawn on a background of its own colour).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch

#: Lambert shading of the primitives models' training renders.
AMBIENT, DIFFUSE = 0.25, 0.75
#: The ``grey`` background.
LAMBERT_BACKGROUND = 0.5
#: The ``random`` backgrounds' least RGB distance from the albedo (the primitives data set's).
MIN_BACKGROUND_DISTANCE = 0.3
#: Candidates drawn per view for a ``random`` background: each is too near the albedo with
#: probability at most 0.12 (the volume of a ball of radius 0.3), so 32 all failing is ~1e-29.
_CANDIDATES = 32

LambertLight = Literal["distant", "point"]
LambertBackground = Literal["grey", "random"]


def lambert_render(
    comp_normal: torch.Tensor,
    opacity: torch.Tensor,
    light_positions: torch.Tensor,
    albedo: torch.Tensor,
    background: Optional[torch.Tensor] = None,
    positions: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``[B, H, W, 3]`` by the module's formula. ``comp_normal`` ``[B, H, W, 3]`` in ``[0, 1]``,
    ``opacity`` ``[B, H, W, 1]``, ``light_positions`` ``[B, 3]``, ``albedo`` ``[3]``;
    ``background`` ``[B, 3]`` (default grey); ``positions`` ``[B, H, W, 3]`` the surface points
    for a point light (default: a distant light)."""
    normal = comp_normal * 2.0 - 1.0
    light = light_positions.to(normal)[:, None, None, :]
    if positions is not None:
        light = light - positions.to(normal)
    light = torch.nn.functional.normalize(light, dim=-1)
    shade = AMBIENT + DIFFUSE * (normal * light).sum(-1, keepdim=True).clamp_min(0.0)
    if background is None:
        fill = torch.full_like(normal[:, :1, :1, :], LAMBERT_BACKGROUND)
    else:
        fill = background.to(normal)[:, None, None, :]
    return opacity * albedo.to(normal) * shade + (1.0 - opacity) * fill


def random_backgrounds(albedo: torch.Tensor, views: int) -> torch.Tensor:
    """``[views, 3]`` uniform RGB colours, each at least :data:`MIN_BACKGROUND_DISTANCE` from
    ``albedo`` ``[3]`` (rejection sampling from the global RNG of ``albedo``'s device; no
    gradient)."""
    albedo = albedo.detach()
    candidates = torch.rand(views, _CANDIDATES, 3, device=albedo.device, dtype=albedo.dtype)
    distance = (candidates - albedo).norm(dim=-1)
    far = distance >= MIN_BACKGROUND_DISTANCE
    # the first far candidate of each view (argmax of a bool picks the first True); a view with
    # none keeps its farthest
    first = torch.where(far.any(dim=1), far.to(torch.uint8).argmax(dim=1), distance.argmax(dim=1))
    return candidates[torch.arange(views, device=albedo.device), first]
