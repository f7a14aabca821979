"""The split-sum lookup table: the GGX BRDF's directional albedo as ``F0 * A + B``.

For the BRDF of :mod:`studio_fantasia3d.lighting.ggx` (GGX, height-correlated Smith, Schlick),
with ``Fc = (1 - v.h)**5``,

    int f(l, v) (n.l) dl = F0 * A + B,   A = int D V (1 - Fc) (n.l) dl,   B = int D V Fc (n.l) dl,

both functions of ``n.v`` and the roughness only. Table entry ``lut[i, j] = (A, B)`` is at
roughness ``(i + 0.5) / R`` (rows) and ``n.v = (j + 0.5) / R`` (columns), like texel centres;
:func:`lookup_brdf` reads it bilinearly, clamping to the border texels.

The integral is taken over the half vector ``h``, drawn with the GGX density ``D(h) (n.h)``
(``u`` in [0, 1] is its CDF in the polar angle, ``phi`` its azimuth), which turns it into
``int int 4 V F (n.l) (v.h) / (n.h) du dphi / (2 pi)``. Gauss-Legendre quadrature on that is
made smooth by splitting the polar angle where the reflected ``l`` meets the horizon: below
``(pi/2 - theta_v)/2`` every azimuth reflects above it; between that and ``(pi/2 + theta_v)/2``
only ``|phi| < acos(c0)`` does, ``c0 = cos(theta_v) (1 / (2 cos(theta_h)) - cos(theta_h)) /
(sin(theta_v) sin(theta_h))``, so the azimuth rule runs over exactly the visible
arc; above, none does. Both pieces map their nodes with ``(1 - cos(pi s)) / 2`` to resolve the
ends, and columns with ``n.v < 0.05`` get three times the nodes. Against an independent
integration over ``l`` the table is within ~1.5e-4 (tests/plugins/fantasia3d/test_lighting_lut.py).
The result is cached in memory and on disk under studio's cache folder (never downloaded).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from studio.api import cache_dir
from studio_fantasia3d.lighting.ggx import ggx_cos_theta, schlick_weight, smith_visibility

#: bump when the integrand or the quadrature changes, so stale cached tables are not read
LUT_VERSION = 2
#: below this n.v, Smith's visibility changes within ~n.v of the horizon, a thin layer that
#: needs ``GRAZING_FACTOR`` times more nodes in each angle for the same accuracy
GRAZING = 0.05
GRAZING_FACTOR = 3


def brdf_lut(
    resolution: int = 256, samples: int = 24, device: torch.device | str | None = None
) -> Tensor:
    """The ``[R, R, 2]`` float32 table of ``(A, B)`` (layout in the module docstring) on ``device``.

    ``samples``: Gauss-Legendre nodes in the polar angle per piece (the azimuth gets half as
    many; three times as many each below ``n.v = 0.05``); 24 integrates to about ``1e-4``. Computed
    once (~4 s on one core), then read from the disk cache; one copy per device is kept in memory
    and shared by all callers, so treat it as read-only. Lookups clamp to the border texels, so
    roughness in ``[1 - 0.5 / R, 1]`` reads the last row (an error up to ~2e-3 at roughness 1)."""
    return _on_device(int(resolution), int(samples), torch.device(device or "cpu"))


def lookup_brdf(lut: Tensor, n_dot_v: Tensor, roughness: Tensor) -> Tensor:
    """Bilinear read of ``lut`` at ``n_dot_v [..., 1]`` and ``roughness [..., 1]`` -> ``[..., 2]``
    (``A``, ``B``); differentiable w.r.t. both (and the table)."""
    dtype = torch.promote_types(lut.dtype, n_dot_v.dtype)
    shape = torch.broadcast_shapes(n_dot_v.shape, roughness.shape)
    x = n_dot_v.expand(shape).to(dtype).reshape(1, 1, -1) * 2.0 - 1.0
    y = roughness.expand(shape).to(dtype).reshape(1, 1, -1) * 2.0 - 1.0
    grid = torch.stack((x, y), dim=-1)
    table = lut.to(dtype).permute(2, 0, 1)[None]
    out = F.grid_sample(table, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].transpose(0, 1).reshape(*shape[:-1], 2)


def integrate_brdf(n_dot_v: Tensor, roughness: Tensor, samples: int = 24) -> Tensor:
    """``(A, B)`` for every pair of ``n_dot_v [N]`` and ``roughness [M]`` -> ``[M, N, 2]`` float64
    (the quadrature of the module docstring)."""
    nodes, node_weights = np.polynomial.legendre.leggauss(samples)
    s = torch.from_numpy((nodes + 1) / 2)
    ws = torch.from_numpy(node_weights / 2)
    azimuth_nodes, azimuth_weights = np.polynomial.legendre.leggauss(max(2, samples // 2))
    t = torch.from_numpy((azimuth_nodes + 1) / 2)
    wt = torch.from_numpy(azimuth_weights / 2)
    # the end-resolving map of each piece's unit interval, and its derivative
    s_mapped = (1 - torch.cos(math.pi * s)) / 2
    ws_mapped = ws * math.pi * torch.sin(math.pi * s) / 2

    alpha = roughness.to(torch.float64).square()[:, None, None, None]
    a2 = alpha * alpha
    cos_v = n_dot_v.to(torch.float64)[None, :, None, None]
    sin_v = torch.sqrt(1 - cos_v * cos_v)
    theta_v = torch.acos(cos_v)

    def cdf(
        theta: Tensor,
    ) -> Tensor:  # the GGX CDF in the polar angle of h, inverse of ggx_cos_theta
        c2 = torch.cos(theta) ** 2
        return (1 - c2) / (1 + (a2 - 1) * c2)

    u_full, u_none = cdf((math.pi / 2 - theta_v) / 2), cdf((math.pi / 2 + theta_v) / 2)
    total = torch.zeros(
        *torch.broadcast_shapes(alpha.shape, cos_v.shape)[:2], 2, dtype=torch.float64
    )
    for low, high, partial in ((torch.zeros_like(u_full), u_full, False), (u_full, u_none, True)):
        u = low + (high - low) * s_mapped[:, None]
        weight_u = (high - low) * ws_mapped[:, None]
        cos_h = ggx_cos_theta(u, alpha)
        sin_h = torch.sqrt((1 - cos_h * cos_h).clamp_min(0))
        if partial:  # l = 2 (v.h) h - v is above the horizon where cos(phi) > c0
            c0 = cos_v * (0.5 / cos_h - cos_h) / (sin_v * sin_h).clamp_min(1e-300)
            arc = torch.acos(c0.clamp(-1, 1))
        else:
            arc = torch.full_like(cos_h, math.pi)
        phi = arc * t
        weight = weight_u * wt * arc / math.pi
        v_dot_h = sin_v * sin_h * torch.cos(phi) + cos_v * cos_h
        n_dot_l = (2 * v_dot_h * cos_h - cos_v).clamp_min(0)
        g = smith_visibility(n_dot_l, cos_v, alpha) * n_dot_l * 4 * v_dot_h / cos_h * weight
        fresnel = schlick_weight(v_dot_h)
        total[..., 0] += (g * (1 - fresnel)).sum(dim=(-2, -1))
        total[..., 1] += (g * fresnel).sum(dim=(-2, -1))
    return total


@functools.lru_cache(maxsize=8)
def _on_device(resolution: int, samples: int, device: torch.device) -> Tensor:
    return _cached(resolution, samples).to(device)


@functools.lru_cache(maxsize=4)
def _cached(resolution: int, samples: int) -> Tensor:
    """The table from the disk cache, or computed and stored there (best effort)."""
    path = cache_dir() / "fantasia3d" / f"brdf-lut-v{LUT_VERSION}-{resolution}-{samples}.npy"
    with contextlib.suppress(OSError, ValueError):
        table = np.load(path)
        if table.shape == (resolution, resolution, 2) and np.isfinite(table).all():
            return torch.from_numpy(table)
    centres = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
    grazing = int((centres < GRAZING).sum())
    rows = []
    for start in range(0, resolution, 16):
        roughness = centres[start : start + 16]
        rows.append(
            torch.cat(
                (
                    integrate_brdf(centres[:grazing], roughness, GRAZING_FACTOR * samples),
                    integrate_brdf(centres[grazing:], roughness, samples),
                ),
                dim=1,
            )
        )
    table = torch.cat(rows).float()
    _store(path, table.numpy())
    return table


def _store(path: Path, table: np.ndarray) -> None:
    """Write ``table`` atomically (temporary file, then rename); an unwritable cache is skipped."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, table)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
