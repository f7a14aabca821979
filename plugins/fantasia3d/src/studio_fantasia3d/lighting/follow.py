"""An environment that follows each view's light (``pbr-material``'s ``environment_follows_light``).

A distant environment is fixed in the world: views from the side away from its sun see the object
backlit. A model trained on objects lit from near the camera (the primitives data set: the light
is drawn around the camera's direction) never saw such views. Rotating the environment per view
so that its *key direction* ``k`` points along the view's light direction ``l`` keeps the sun
behind the camera, as a photographer's key light.

The key direction is the environment's luminance-weighted mean direction, ``normalize(sum_w
Y(L(w)) w)`` over a Fibonacci sphere of directions: for the procedural sky, 12.6 degrees from its
sun (the bright sky near the zenith pulls it up); for any ``.hdr`` map, where most of its light
comes from.

Shading with the rotated environment ``L'(w) = L(Q w)`` (``Q`` the rotation taking ``l`` onto
``k``) equals shading with the original one after rotating the normal and the view direction by
``Q`` (the split-sum terms use ``n . v``, ``L(n)`` and ``L(reflect(v, n))``, and ``reflect``
commutes with rotations), so only those two vectors turn.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from studio_fantasia3d.lighting.light import EnvironmentLight

#: Rec. 709 luminance weights.
LUMINANCE = (0.2126, 0.7152, 0.0722)


def fibonacci_directions(count: int, *, device: torch.device | str | None = None) -> Tensor:
    """``[count, 3]`` unit directions spread evenly over the sphere (a Fibonacci lattice)."""
    i = torch.arange(count, dtype=torch.float64, device=device) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = (1.0 - z * z).clamp_min(0.0).sqrt()
    return torch.stack((r * phi.cos(), r * phi.sin(), z), dim=-1)


def key_direction(light: EnvironmentLight, samples: int = 8192) -> Tensor:
    """The environment's luminance-weighted mean direction ``[3]`` (unit; float32, on the
    light's device). An environment of uniform radiance has none: ``+z`` then."""
    device = light.radiance_map.device
    directions = fibonacci_directions(samples, device=device).float()
    luminance = light.radiance(directions) @ torch.tensor(LUMINANCE, device=device)
    mean = (luminance[:, None] * directions).sum(0)
    if mean.norm() <= 1e-6 * luminance.abs().sum().clamp_min(1e-12):
        return torch.tensor([0.0, 0.0, 1.0], device=device)
    return F.normalize(mean, dim=0)


def rotate_onto(source: Tensor, target: Tensor, vectors: Tensor) -> Tensor:
    """``vectors [..., 3]`` rotated by the rotation that takes the unit ``source [..., 3]`` onto
    the unit ``target [..., 3]`` along their great circle (Rodrigues: ``x c + s x x + s (s . x) /
    (1 + c)`` with ``s = source x target``, ``c = source . target``). Opposite vectors turn by
    180 degrees about an axis perpendicular to ``source``. Differentiable in ``vectors``; the
    three broadcast against each other, ``source`` and ``vectors`` with as many dimensions."""
    source, target = torch.broadcast_tensors(source, target)
    axis = torch.cross(source, target, dim=-1)
    cos = (source * target).sum(-1, keepdim=True)
    along = (
        vectors * cos
        + torch.cross(axis, vectors, dim=-1)
        + axis * (axis * vectors).sum(-1, keepdim=True) / (1.0 + cos).clamp_min(1e-6)
    )
    # a half turn about u (perpendicular to source): x -> 2 (u . x) u - x; chosen by where, so
    # no host sync asks whether any pair is opposite
    helper = torch.where(
        source[..., :1].abs() < 0.9,
        torch.tensor([1.0, 0.0, 0.0], device=source.device, dtype=source.dtype),
        torch.tensor([0.0, 1.0, 0.0], device=source.device, dtype=source.dtype),
    )
    u = F.normalize(torch.cross(source, helper, dim=-1), dim=-1)
    half_turn = 2.0 * (u * vectors).sum(-1, keepdim=True) * u - vectors
    return torch.where(cos < -1.0 + 1e-6, half_turn, along)
