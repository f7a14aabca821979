"""The equirectangular (latitude-longitude) mapping of directions to map texels, z up.

A map is a ``[H, W, 3]`` tensor with ``W = 2 H``. With the polar angle ``theta = acos(z)`` and the
azimuth ``phi = atan2(y, x)``, a direction lands at the continuous texture coordinates

* ``v = theta / pi``: row 0's top edge is the zenith ``+z``, the middle of the map the horizon
  ``z = 0``, the last row's bottom edge the nadir ``-z``;
* ``u = 0.5 - phi / (2 pi)``: the left edge (``u = 0``) faces ``-x``, a quarter across ``+y``,
  the centre column ``+x``, three quarters ``-y``, and the right edge wraps to ``-x`` again.

``u`` grows clockwise seen from above, so a panorama photographed standing upright shows
unmirrored from inside the sphere (turning right moves right across the image). Texel ``(i, j)``
covers ``v in [i, i + 1] / H`` and ``u in [j, j + 1] / W``; its centre is the direction
:func:`texel_directions` returns. Lookups interpolate bilinearly between texel centres, wrap
around in ``u``, and between the first (last) row's centres and the pole blend towards the row's
mean, taken as the value at the pole: continuous there, with bounded gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def row_polar_angles(height: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The polar angle ``theta`` (from ``+z``) of each row's texel centres, ``[H]``."""
    return (torch.arange(height, dtype=dtype) + 0.5) * (math.pi / height)


def column_azimuths(width: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The azimuth ``phi = atan2(y, x)`` of each column's texel centres, ``[W]``."""
    return math.pi - (torch.arange(width, dtype=dtype) + 0.5) * (2.0 * math.pi / width)


def texel_directions(height: int, width: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Unit directions of all texel centres, ``[H, W, 3]``."""
    theta = row_polar_angles(height, dtype=dtype)[:, None]
    phi = column_azimuths(width, dtype=dtype)[None, :]
    x = torch.sin(theta) * torch.cos(phi)
    return torch.stack((x, torch.sin(theta) * torch.sin(phi), torch.cos(theta).expand_as(x)), -1)


def row_solid_angles(height: int, width: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The exact solid angle of one texel in each row, ``(cos theta_top - cos theta_bottom) 2 pi / W``;
    they sum to ``4 pi`` over the map."""
    edges = torch.cos(torch.arange(height + 1, dtype=dtype) * (math.pi / height))
    return (edges[:-1] - edges[1:]) * (2.0 * math.pi / width)


def downsample(image: Tensor, factor: int) -> Tensor:
    """Average ``factor x factor`` texel blocks of ``image [H, W, C]`` weighted by solid angle,
    so the radiant power of every block is kept (a small sun keeps its energy)."""
    if factor == 1:
        return image
    height, width = image.shape[:2]
    weight = row_solid_angles(height, width, dtype=image.dtype).to(image.device)[:, None, None]
    pool = (image * weight).permute(2, 0, 1)[None]
    summed = F.avg_pool2d(pool, factor)[0].permute(1, 2, 0)
    norm = F.avg_pool2d(weight.expand(height, width, 1).permute(2, 0, 1)[None], factor)
    return summed / norm[0].permute(1, 2, 0)


def pad_for_lookup(image: Tensor) -> Tensor:
    """``image [H, W, C]`` as the ``[1, C, H + 2, W + 2]`` texture :func:`lookup_uv` reads: one
    column copied from the opposite side onto each side, so bilinear reads wrap around in ``u``,
    and a row above and below holding the mean of the first and last row, the value at the pole
    itself. Reads between a pole and the first row's centres blend towards that single value, so
    the lookup is continuous at the poles and its gradient stays bounded there."""
    wrapped = torch.cat((image[:, -1:], image, image[:, :1]), dim=1)
    top = wrapped[:1].mean(dim=1, keepdim=True).expand(1, wrapped.shape[1], -1)
    bottom = wrapped[-1:].mean(dim=1, keepdim=True).expand(1, wrapped.shape[1], -1)
    return torch.cat((top, wrapped, bottom), dim=0).permute(2, 0, 1)[None].contiguous()


def direction_to_uv(direction: Tensor) -> Tensor:
    """Texture coordinates ``(u, v)`` in ``[0, 1]`` of (not necessarily unit) ``direction [..., 3]``.

    Differentiable everywhere; at the poles the azimuth is taken as ``0`` with a finite gradient."""
    x, y, z = direction.unbind(-1)
    tiny = torch.finfo(direction.dtype).tiny ** 0.25
    at_pole = (x.abs() + y.abs()) < tiny
    x_safe = torch.where(at_pole, torch.full_like(x, tiny), x)
    horizontal = torch.sqrt(x_safe * x_safe + y * y)
    u = 0.5 - torch.atan2(y, x_safe) / (2.0 * math.pi)
    v = torch.atan2(horizontal, z) / math.pi
    return torch.stack((u, v), dim=-1)


def lookup(texture: Tensor, direction: Tensor) -> Tensor:
    """Bilinear read of a :func:`pad_for_lookup` texture along ``direction [..., 3]`` -> ``[..., C]``.

    Differentiable w.r.t. the direction (and the texture); computed in the wider of the two dtypes."""
    dtype = torch.promote_types(texture.dtype, direction.dtype)
    return lookup_uv(texture, direction_to_uv(direction.to(dtype)))


def lookup_uv(texture: Tensor, uv: Tensor) -> Tensor:
    """Bilinear read of a :func:`pad_for_lookup` texture at texture coordinates ``uv [..., 2]``
    (from :func:`direction_to_uv`, so several maps can share one conversion) -> ``[..., C]``."""
    dtype = torch.promote_types(texture.dtype, uv.dtype)
    padded_height, padded_width = texture.shape[-2:]
    height = padded_height - 2
    flat = uv.to(dtype).reshape(1, 1, -1, 2)
    # in padded texel units: map column j's centre is at j + 1.5 (after the wrap column); map
    # row i's centre at i + 1.5, the pole rows' at 0.5 and H + 1.5, reached at v = 0 and v = 1
    x = flat[..., 0] * (padded_width - 2) + 1.0
    t = flat[..., 1] * height
    y = t + 1.0 - (0.5 - t).clamp_min(0.0) + (t - (height - 0.5)).clamp_min(0.0)
    # align_corners=False: normalised -1 / +1 are the outer edges of the padded texture
    gx = 2.0 * x / padded_width - 1.0
    gy = 2.0 * y / padded_height - 1.0
    out = F.grid_sample(
        texture.to(dtype),
        torch.stack((gx, gy), dim=-1),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return out[0, :, 0].transpose(0, 1).reshape(*uv.shape[:-1], texture.shape[1])
