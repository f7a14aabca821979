# ruff: noqa: N803  (Triton compile-time constants are upper case by convention)
"""Fused Triton kernels for :class:`~studio_dreamfusion.networks.hashgrid.HashGrid` (3D, CUDA).

The PyTorch grid needs about a hundred small kernels per forward and as many again for each
backward, and analytic normals add a double backward on top: on a GPU the render is bound by
launches, not arithmetic (docs/performance.md). Here one kernel encodes every level (and, when
asked, the spatial Jacobian used for analytic normals) and one kernel scatters the gradient of
both outputs into the table, with atomics, as tiny-cuda-nn does.

Contract (same as the PyTorch path, to float32 rounding): inputs ``[N, 3]`` that need no gradient;
``encoded[n, l*F + f]`` and ``jacobian[n, i, l*F + f] = d encoded[n, l*F + f] / d x[n, i]``; the
gradient reaches the table only. Positions use ``fma(x, scale, 0.5)`` in float32, which is
tcnn's own rounding. Triton is imported on first use only.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import triton
import triton.language as tl

from studio_dreamfusion.networks.hash_primes import PRIMES


class HashGrid(Protocol):
    """What the kernels read of :class:`~studio_dreamfusion.networks.hashgrid.HashGrid`."""

    layout: Any
    params: torch.Tensor
    n_levels: int
    n_features_per_level: int
    n_output_dims: int


_BLOCK = 128  # points per program; one program handles one level of a block of points


@triton.jit
def _corner(
    cx,
    cy,
    cz,
    fx,
    fy,
    fz,
    scale,
    offset,
    size,
    resolution,
    dense,
    CORNER: tl.constexpr,
    PRIME_Y: tl.constexpr,
    PRIME_Z: tl.constexpr,
):
    """Table row, weight and d weight / d (x, y, z) of one of the 8 corners of each cell."""
    BX: tl.constexpr = CORNER & 1
    BY: tl.constexpr = (CORNER >> 1) & 1
    BZ: tl.constexpr = (CORNER >> 2) & 1
    kx = cx + BX
    ky = cy + BY
    kz = cz + BZ
    if BX:
        wx = fx
        sx = scale
    else:
        wx = 1.0 - fx
        sx = -scale
    if BY:
        wy = fy
        sy = scale
    else:
        wy = 1.0 - fy
        sy = -scale
    if BZ:
        wz = fz
        sz = scale
    else:
        wz = 1.0 - fz
        sz = -scale
    # Dense levels: x + y*res + z*res^2 in uint32, then % size; the low 32 bits of the exact
    # int64 sum are `s - ((s >> 32) << 32)` (also for negative sums). Hashed levels have
    # power-of-two tables: XOR of coord * prime, then % size as a mask of the low bits, which
    # the uint32 wraparound does not touch.
    linear = kx + ky * resolution + kz * resolution * resolution
    dense_index = (linear - ((linear >> 32) << 32)) % size
    hashed = (kx ^ (ky * PRIME_Y) ^ (kz * PRIME_Z)) & (size - 1)
    row = offset + tl.where(dense != 0, dense_index, hashed)
    weight = wx * wy * wz
    return row, weight, sx * wy * wz, wx * sy * wz, wx * wy * sz


@triton.jit
def _cells(x_ptr, rows, valid, scale):
    """Integer cell (int64) and fraction of each point at one level: pos = fma(x, scale, 0.5)."""
    x = tl.load(x_ptr + rows * 3 + 0, mask=valid, other=0.0)
    y = tl.load(x_ptr + rows * 3 + 1, mask=valid, other=0.0)
    z = tl.load(x_ptr + rows * 3 + 2, mask=valid, other=0.0)
    px = tl.fma(x, scale, 0.5)
    py = tl.fma(y, scale, 0.5)
    pz = tl.fma(z, scale, 0.5)
    fx = tl.floor(px)
    fy = tl.floor(py)
    fz = tl.floor(pz)
    return (
        fx.to(tl.int64),
        fy.to(tl.int64),
        fz.to(tl.int64),
        px - fx,
        py - fy,
        pz - fz,
    )


@triton.jit
def _encode_kernel(
    x_ptr,
    table_ptr,
    scales_ptr,
    offsets_ptr,
    sizes_ptr,
    resolutions_ptr,
    dense_ptr,
    out_ptr,
    jac_ptr,
    n_points,
    N_OUT: tl.constexpr,
    F: tl.constexpr,
    WITH_JACOBIAN: tl.constexpr,
    BLOCK: tl.constexpr,
    PRIME_Y: tl.constexpr,
    PRIME_Z: tl.constexpr,
):
    level = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = rows < n_points
    rows = rows.to(tl.int64)
    scale = tl.load(scales_ptr + level)
    offset = tl.load(offsets_ptr + level)
    size = tl.load(sizes_ptr + level)
    resolution = tl.load(resolutions_ptr + level)
    dense = tl.load(dense_ptr + level)
    cx, cy, cz, fx, fy, fz = _cells(x_ptr, rows, valid, scale)
    feats = tl.arange(0, F)
    mask2 = valid[:, None]
    acc = tl.zeros([BLOCK, F], dtype=tl.float32)
    jx = tl.zeros([BLOCK, F], dtype=tl.float32)
    jy = tl.zeros([BLOCK, F], dtype=tl.float32)
    jz = tl.zeros([BLOCK, F], dtype=tl.float32)
    for corner in tl.static_range(8):
        row, w, dwx, dwy, dwz = _corner(
            cx,
            cy,
            cz,
            fx,
            fy,
            fz,
            scale,
            offset,
            size,
            resolution,
            dense,
            corner,
            PRIME_Y,
            PRIME_Z,
        )
        values = tl.load(table_ptr + row[:, None] * F + feats[None, :], mask=mask2, other=0.0)
        acc += w[:, None] * values
        if WITH_JACOBIAN:
            jx += dwx[:, None] * values
            jy += dwy[:, None] * values
            jz += dwz[:, None] * values
    column = level * F + feats[None, :]
    tl.store(out_ptr + rows[:, None] * N_OUT + column, acc, mask=mask2)
    if WITH_JACOBIAN:
        base = jac_ptr + rows[:, None] * (3 * N_OUT) + column
        tl.store(base, jx, mask=mask2)
        tl.store(base + N_OUT, jy, mask=mask2)
        tl.store(base + 2 * N_OUT, jz, mask=mask2)


@triton.jit
def _backward_kernel(
    x_ptr,
    grad_out_ptr,
    grad_jac_ptr,
    grad_table_ptr,
    scales_ptr,
    offsets_ptr,
    sizes_ptr,
    resolutions_ptr,
    dense_ptr,
    n_points,
    N_OUT: tl.constexpr,
    F: tl.constexpr,
    WITH_OUT: tl.constexpr,
    WITH_JACOBIAN: tl.constexpr,
    BLOCK: tl.constexpr,
    PRIME_Y: tl.constexpr,
    PRIME_Z: tl.constexpr,
):
    level = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = rows < n_points
    rows = rows.to(tl.int64)
    scale = tl.load(scales_ptr + level)
    offset = tl.load(offsets_ptr + level)
    size = tl.load(sizes_ptr + level)
    resolution = tl.load(resolutions_ptr + level)
    dense = tl.load(dense_ptr + level)
    cx, cy, cz, fx, fy, fz = _cells(x_ptr, rows, valid, scale)
    # One feature at a time, as 1D vectors: the upstream gradients are read once per feature
    # and each corner's contribution is added to the table with one atomic per point.
    for feature in tl.static_range(F):
        column = level * F + feature
        g_out = tl.zeros([BLOCK], dtype=tl.float32)
        gx = tl.zeros([BLOCK], dtype=tl.float32)
        gy = tl.zeros([BLOCK], dtype=tl.float32)
        gz = tl.zeros([BLOCK], dtype=tl.float32)
        if WITH_OUT:
            g_out = tl.load(grad_out_ptr + rows * N_OUT + column, mask=valid, other=0.0)
        if WITH_JACOBIAN:
            base = grad_jac_ptr + rows * (3 * N_OUT) + column
            gx = tl.load(base, mask=valid, other=0.0)
            gy = tl.load(base + N_OUT, mask=valid, other=0.0)
            gz = tl.load(base + 2 * N_OUT, mask=valid, other=0.0)
        for corner in tl.static_range(8):
            row, w, dwx, dwy, dwz = _corner(
                cx,
                cy,
                cz,
                fx,
                fy,
                fz,
                scale,
                offset,
                size,
                resolution,
                dense,
                corner,
                PRIME_Y,
                PRIME_Z,
            )
            grad = w * g_out
            if WITH_JACOBIAN:
                grad += dwx * gx + dwy * gy + dwz * gz
            tl.atomic_add(grad_table_ptr + row * F + feature, grad, mask=valid)


def _level_tables(grid: HashGrid, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per-level scale (float32), table offset, table size, resolution (int64), dense flag."""
    cache: dict[Any, tuple[torch.Tensor, ...]] = grid.__dict__.setdefault("_triton_levels", {})
    if device not in cache:
        lay = grid.layout
        cache[device] = (
            torch.tensor(lay.scales, dtype=torch.float32, device=device),
            torch.tensor(lay.offsets[:-1], dtype=torch.int64, device=device),
            torch.tensor(lay.sizes, dtype=torch.int64, device=device),
            torch.tensor(lay.resolutions, dtype=torch.int64, device=device),
            torch.tensor(lay.dense, dtype=torch.int32, device=device),
        )
    return cache[device]


class _FusedHashGrid(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, params: torch.Tensor, grid: HashGrid, with_jacobian: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        levels = _level_tables(grid, x.device)
        n, n_out, feats = x.shape[0], grid.n_output_dims, grid.n_features_per_level
        out = torch.empty(n, n_out, device=x.device, dtype=torch.float32)
        jac = (
            torch.empty(n, 3, n_out, device=x.device, dtype=torch.float32)
            if with_jacobian
            else out.new_empty(0)
        )
        if n > 0:
            launch = (triton.cdiv(n, _BLOCK), grid.n_levels)
            _encode_kernel[launch](
                x,
                params,
                *levels,
                out,
                jac,
                n,
                N_OUT=n_out,
                F=feats,
                WITH_JACOBIAN=with_jacobian,
                BLOCK=_BLOCK,
                PRIME_Y=PRIMES[1],
                PRIME_Z=PRIMES[2],
            )
        ctx.save_for_backward(x)
        ctx.grid = grid
        ctx.with_jacobian = with_jacobian
        ctx.set_materialize_grads(False)
        if not with_jacobian:
            ctx.mark_non_differentiable(jac)
        return out, jac

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor | None, grad_jac: torch.Tensor | None):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        grid: HashGrid = ctx.grid
        grad_table = torch.zeros_like(grid.params)
        with_jac = ctx.with_jacobian and grad_jac is not None
        n = x.shape[0]
        if n > 0 and (grad_out is not None or with_jac):
            dummy = grad_table  # a valid pointer for an input the kernel does not read
            launch = (triton.cdiv(n, _BLOCK), grid.n_levels)
            _backward_kernel[launch](
                x,
                grad_out.contiguous() if grad_out is not None else dummy,
                grad_jac.contiguous() if with_jac else dummy,
                grad_table,
                *_level_tables(grid, x.device),
                n,
                N_OUT=grid.n_output_dims,
                F=grid.n_features_per_level,
                WITH_OUT=grad_out is not None,
                WITH_JACOBIAN=with_jac,
                BLOCK=_BLOCK,
                PRIME_Y=PRIMES[1],
                PRIME_Z=PRIMES[2],
            )
        return None, grad_table, None, None


def fused_encode(
    grid: HashGrid, x: torch.Tensor, with_jacobian: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``grid``'s encoding of ``x`` (and its Jacobian) by the fused kernels; see the module doc."""
    with torch.autocast(device_type="cuda", enabled=False):
        x = x.detach().float().contiguous()
        out, jac = _FusedHashGrid.apply(x, grid.params, grid, with_jacobian)
    return out, (jac if with_jacobian else None)
