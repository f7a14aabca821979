"""Multi-resolution hash-grid encoding in pure PyTorch, laid out exactly like tiny-cuda-nn's.

A config (``n_levels``, ``n_features_per_level``, ``log2_hashmap_size``, ``base_resolution``,
``per_level_scale``) means the same thing here as in tiny-cuda-nn's ``HashGrid`` / ``Grid`` with
``type: Hash``, and the flat parameter vector :attr:`HashGrid.params` has tiny-cuda-nn's layout
(same length, same order), so weights can move between the two backends.

What was checked against tiny-cuda-nn's source (``include/tiny-cuda-nn/encodings/grid.h`` and
``include/tiny-cuda-nn/common_device.h`` of NVlabs/tiny-cuda-nn, read through the code search):

* level scale: ``exp2f(level * log2(per_level_scale)) * base_resolution - 1`` (``grid_scale``);
  ``per_level_scale`` is read as a float32, its log2 taken in float32.
* level resolution: ``ceil(scale) + 1`` (``grid_resolution``).
* level table size (in entries of ``n_features_per_level`` values): ``resolution**d`` rounded up
  to a multiple of 8, then ``min(.., 2**log2_hashmap_size)`` for hash grids (the constructor of
  ``GridEncodingTemplated``); level ``l`` starts at entry ``offset[l] = sum of earlier sizes``;
  the parameter vector has ``offset[n_levels] * n_features_per_level`` floats, entry ``e``
  feature ``f`` at ``e * n_features_per_level + f``; initialised uniform(-1e-4, 1e-4).
* position: ``pos = fmaf(scale, x, 0.5)``, ``cell = floor(pos)``, weight ``pos - cell`` (plain
  multilinear for ``interpolation: Linear``, the default); corner ``idx`` takes ``cell + 1`` in
  dimension ``i`` when bit ``i`` of ``idx`` is set.
* ``grid_index``: dense index ``sum_i coord_i * resolution**i`` while ``resolution**d`` fits the
  level's table (``hashmap_size >= stride``), otherwise the "coherent prime" hash ``XOR_i
  coord_i * prime_i`` in uint32 arithmetic with primes (1, 2654435761, 805459861, 3674653429,
  2097192037, 1434869437, 2165219737); in BOTH cases the result is taken ``% hashmap_size`` (a
  modulo, not a mask). For dense levels this matters: the upper corner of the last cell
  (coordinate ``resolution``, reached for x near 1) wraps around into the next row, exactly as
  tcnn's comment on the 0.5 offset says ("can cause wraparound indexing in dense grids").
* output: level-major, ``[level0 f0, level0 f1, level1 f0, ...]``.

Differences kept (rounding level only, not layout): tcnn evaluates ``exp2f`` on the GPU (up to
2 ulp) where the scales here are computed once on the host in float32; ``pos`` is computed in
float64 and rounded once to float32, which equals tcnn's ``fmaf`` except in rare double-rounding
cases. As the interpolation is continuous across cells, such 1-ulp differences change the output
only at rounding level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from studio_dreamfusion.networks.hash_primes import PRIMES

_UINT32_MASK = 0xFFFFFFFF


def _next_multiple(value: int, divisor: int) -> int:
    return (value + divisor - 1) // divisor * divisor


def level_scale(level: int, per_level_scale: float, base_resolution: int) -> float:
    """tcnn's ``grid_scale`` in float32: ``exp2(level * log2(per_level_scale)) * base - 1``."""
    log2_scale = np.log2(np.float32(per_level_scale), dtype=np.float32)
    growth = np.exp2(np.float32(level) * log2_scale, dtype=np.float32)
    # A single rounding of growth * base - 1 (what nvcc's contracted multiply-add gives).
    return float(np.float32(float(growth) * base_resolution - 1.0))


@dataclass(frozen=True)
class GridLayout:
    """Per-level geometry of a hash grid; ``offsets`` has ``n_levels + 1`` entries (table rows)."""

    n_input_dims: int
    n_features_per_level: int
    scales: tuple[float, ...]
    resolutions: tuple[int, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    dense: tuple[bool, ...]

    @property
    def n_levels(self) -> int:
        return len(self.scales)

    @property
    def n_entries(self) -> int:
        """Rows of the concatenated table (``offsets[-1]``)."""
        return self.offsets[-1]

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector (tcnn's ``n_params``)."""
        return self.offsets[-1] * self.n_features_per_level


def grid_layout(
    n_input_dims: int = 3,
    n_levels: int = 16,
    n_features_per_level: int = 2,
    log2_hashmap_size: int = 19,
    base_resolution: int = 16,
    per_level_scale: float = 2.0,
) -> GridLayout:
    """The scales, resolutions, table sizes, offsets and dense flags tcnn computes for a config."""
    scales, resolutions, sizes, offsets, dense = [], [], [], [0], []
    max_params = _UINT32_MASK // 2
    for level in range(n_levels):
        scale = level_scale(level, per_level_scale, base_resolution)
        resolution = math.ceil(scale) + 1
        dense_size = min(resolution**n_input_dims, max_params)
        size = min(_next_multiple(dense_size, 8), 1 << log2_hashmap_size)
        scales.append(scale)
        resolutions.append(resolution)
        sizes.append(size)
        offsets.append(offsets[-1] + size)
        # tcnn hashes when the table is smaller than the dense grid (``hashmap_size < stride``).
        dense.append(resolution**n_input_dims <= size)
    return GridLayout(
        n_input_dims=n_input_dims,
        n_features_per_level=n_features_per_level,
        scales=tuple(scales),
        resolutions=tuple(resolutions),
        sizes=tuple(sizes),
        offsets=tuple(offsets),
        dense=tuple(dense),
    )


class HashGrid(nn.Module):
    """tcnn-compatible multi-resolution hash grid (pure PyTorch, differentiable twice).

    ``forward(x)``: ``x`` is ``[N, n_input_dims]`` in ``[0, 1]`` (other values are encoded as
    tcnn would, with uint32 wraparound); returns float32 ``[N, n_levels * n_features_per_level]``.
    Gradients flow to :attr:`params` and to ``x`` (through the interpolation weights), and the
    graph supports double backward (analytic normals with losses on them).
    :meth:`forward_with_jacobian` gives the spatial Jacobian explicitly instead (first-order
    autograd only). With ``fused=True``, CUDA inputs that need no gradient are encoded by fused
    Triton kernels (:mod:`studio_dreamfusion.networks.hashgrid_triton`), same results.
    """

    def __init__(
        self,
        n_input_dims: int = 3,
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        per_level_scale: float = 2.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= n_input_dims <= len(PRIMES):
            raise ValueError(f"HashGrid: n_input_dims must be 1..{len(PRIMES)}, got {n_input_dims}")
        if n_levels < 1 or n_features_per_level < 1:
            raise ValueError("HashGrid: n_levels and n_features_per_level must be positive")
        if not 3 <= log2_hashmap_size <= 30:
            raise ValueError(f"HashGrid: log2_hashmap_size must be 3..30, got {log2_hashmap_size}")
        self.n_input_dims = n_input_dims
        self.n_levels = n_levels
        self.n_features_per_level = n_features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = base_resolution
        self.per_level_scale = per_level_scale
        self.n_output_dims = n_levels * n_features_per_level
        #: Use the fused Triton kernels for CUDA inputs that need no gradient (3D only).
        self.fused = fused
        self.layout = grid_layout(
            n_input_dims,
            n_levels,
            n_features_per_level,
            log2_hashmap_size,
            base_resolution,
            per_level_scale,
        )
        if self.layout.n_entries >= 2**31:
            raise ValueError(f"HashGrid: {self.layout.n_entries} table entries is too many")
        self.params = nn.Parameter(torch.empty(self.layout.n_params, dtype=torch.float32))
        nn.init.uniform_(self.params, -1e-4, 1e-4)

        # Levels split into two groups (dense indexing, hashing), each handled by tensor ops over
        # all its levels at once. With a growing scale the dense levels are a prefix.
        lay = self.layout
        self._groups: list[tuple[bool, list[int]]] = [
            (flag, [lv for lv in range(n_levels) if lay.dense[lv] == flag])
            for flag in (True, False)
        ]
        self._groups = [(flag, levels) for flag, levels in self._groups if levels]
        order = [lv for _, levels in self._groups for lv in levels]
        self._reorder = order != list(range(n_levels))
        self._inverse_order = [order.index(lv) for lv in range(n_levels)]
        for flag, levels in self._groups:
            tag = "dense" if flag else "hash"
            self.register_buffer(
                f"_{tag}_scales",
                torch.tensor([lay.scales[lv] for lv in levels], dtype=torch.float64),
                persistent=False,
            )
            self.register_buffer(
                f"_{tag}_offsets",
                torch.tensor([lay.offsets[lv] for lv in levels], dtype=torch.int64),
                persistent=False,
            )
            if flag:
                strides = [[lay.resolutions[lv] ** i for i in range(n_input_dims)] for lv in levels]
                self.register_buffer(
                    "_dense_strides", torch.tensor(strides, dtype=torch.int64), persistent=False
                )
                self.register_buffer(
                    "_dense_sizes",
                    torch.tensor([lay.sizes[lv] for lv in levels], dtype=torch.int64),
                    persistent=False,
                )
        # Corner bit b of a dimension: coordinate cell + b, weight (1 - frac, frac)[b] as 1-b + s*f.
        self.register_buffer("_bit", torch.tensor([0, 1], dtype=torch.int64), persistent=False)
        self.register_buffer("_lower_weight", torch.tensor([1.0, 0.0]), persistent=False)
        self.register_buffer("_weight_sign", torch.tensor([-1.0, 1.0]), persistent=False)
        # Every hashed level has a full table of 2**log2_hashmap_size entries (a power of two),
        # so `% size` of the uint32 hash equals a bit mask.
        self._hash_mask = (1 << log2_hashmap_size) - 1

    def extra_repr(self) -> str:
        return (
            f"n_input_dims={self.n_input_dims}, n_levels={self.n_levels}, "
            f"n_features_per_level={self.n_features_per_level}, "
            f"log2_hashmap_size={self.log2_hashmap_size}, base_resolution={self.base_resolution}, "
            f"per_level_scale={self.per_level_scale}, n_params={self.layout.n_params}"
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(
                f"HashGrid expects input [N, {self.n_input_dims}], got {tuple(x.shape)}"
            )

    def _fused_kernel_applies(self, x: torch.Tensor) -> bool:
        """The Triton kernels serve CUDA inputs that need no gradient (sample positions)."""
        return (
            self.fused
            and x.is_cuda
            and self.n_input_dims == 3
            and not (x.requires_grad and torch.is_grad_enabled())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self._fused_kernel_applies(x):
            from studio_dreamfusion.networks.hashgrid_triton import fused_encode

            return fused_encode(self, x, with_jacobian=False)[0]
        # Float32 throughout: autocast would run the corner-weighting matmul in half precision.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            table = self.params.view(-1, self.n_features_per_level)
            # At most two groups (dense levels, hashed levels): not a loop over levels.
            parts = [self._encode_group(x, table, dense)[0] for dense, _ in self._groups]
            return self._level_major_to_points(parts)

    def forward_with_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoding and its spatial Jacobian: ``[N, n_out]`` and ``[N, n_input_dims, n_out]``.

        ``jacobian[n, i, k] = d encoding[n, k] / d x[n, i]`` (zero gradient of the cell index, as
        autograd gives). Both outputs are differentiable with respect to :attr:`params` (first
        order only), not to ``x``: this is the explicit form of analytic normals, with no double
        backward. On CUDA it runs fused Triton kernels when they are enabled.
        """
        self._check_input(x)
        if x.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                "HashGrid.forward_with_jacobian gives no gradient to its input; pass positions "
                "that do not require grad (use forward() and autograd for input gradients)."
            )
        if self._fused_kernel_applies(x):
            from studio_dreamfusion.networks.hashgrid_triton import fused_encode

            encoded, jacobian = fused_encode(self, x, with_jacobian=True)
            assert jacobian is not None
            return encoded, jacobian
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            table = self.params.view(-1, self.n_features_per_level)
            parts = [
                self._encode_group(x, table, dense, jacobian=True) for dense, _ in self._groups
            ]
            encoded = self._level_major_to_points([value for value, _ in parts])
            jacobian = self._level_major_to_points([jac for _, jac in parts])  # [N, d, L * F]
            return encoded, jacobian

    def _level_major_to_points(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """``[L_group, N, ..., F]`` blocks (group order) -> ``[N, ..., L * F]`` in level order."""
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # [L, N, ..., F]
        if self._reorder:
            out = out[self._inverse_order]
        # the level axis goes just before the features: [N, ..., L, F] -> [N, ..., L * F]
        return out.movedim(0, -2).reshape(*out.shape[1:-1], self.n_output_dims)

    def _encode_group(
        self, x: torch.Tensor, table: torch.Tensor, dense: bool, jacobian: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode ``x`` at every level of one group: ``[n_group_levels, N, F]``, and with
        ``jacobian`` its derivative in ``x``, ``[n_group_levels, N, d, F]`` (else None).

        Level-major order keeps one level's table hot in the cache at a time (as tcnn's kernel
        does with one level per block); it was 1.3-1.5x faster than point-major on CPU.
        """
        tag = "dense" if dense else "hash"
        scales: torch.Tensor = getattr(self, f"_{tag}_scales")
        offsets: torch.Tensor = getattr(self, f"_{tag}_offsets")
        shape = (scales.shape[0], 1, 1)

        # tcnn: pos = fmaf(scale, x, 0.5f), one rounding. The float64 product of two float32
        # numbers is exact, so rounding the float64 result to float32 gives the same value.
        pos = (x.double().unsqueeze(0) * scales.view(shape) + 0.5).float()  # [Lg, N, d]
        floor = torch.floor(pos)
        frac = pos - floor  # d frac / d x = scale (floor has zero gradient)
        cell = floor.to(torch.int64)
        # d weight / d x per dimension: (-scale, +scale) for the (lower, upper) corner.
        slope = self._weight_sign * scales.float().view(shape) if jacobian else None

        index: torch.Tensor | None = None  # [Lg, N, 2**k] after k dimensions
        weight: torch.Tensor | None = None
        # d weight / d x_i for the dimensions i seen so far, each [Lg, N, 2**k]
        weight_slopes: list[torch.Tensor] = []
        for dim in range(self.n_input_dims):  # the (3) input dimensions, not levels or points
            corners = cell[..., dim, None] + self._bit  # [Lg, N, 2]: lower, upper coordinate
            if dense:
                term = corners * self._dense_strides[:, dim].view(shape)
            else:
                # tcnn's uint32 product is the low 32 bits of this exact int64 product, and the
                # final `% 2**log2_hashmap_size` (a mask of those bits) commutes with XOR: mask
                # each small [Lg, N, 2] term now instead of the [Lg, N, 2**d] result.
                term = (corners * PRIMES[dim]) & self._hash_mask
            w = torch.addcmul(self._lower_weight, frac[..., dim, None], self._weight_sign)
            if index is None or weight is None:
                index, weight = term, w
                if slope is not None:
                    weight_slopes = [slope.expand_as(w)]
            else:
                # The new dimension is the slower axis: corner c has bit `dim` set iff c >= 2**dim.
                if dense:
                    index = term.unsqueeze(-1) + index.unsqueeze(-2)
                else:
                    index = torch.bitwise_xor(term.unsqueeze(-1), index.unsqueeze(-2))
                index = index.flatten(-2)
                if slope is not None:  # product rule: one factor differentiated at a time
                    weight_slopes = [
                        (w.unsqueeze(-1) * s.unsqueeze(-2)).flatten(-2) for s in weight_slopes
                    ]
                    weight_slopes.append((slope.unsqueeze(-1) * weight.unsqueeze(-2)).flatten(-2))
                weight = (w.unsqueeze(-1) * weight.unsqueeze(-2)).flatten(-2)
        assert index is not None and weight is not None
        if dense:  # uint32 wraparound, then tcnn's `% hashmap_size`
            index = torch.remainder(index & _UINT32_MASK, self._dense_sizes.view(shape))
            index = index + offsets.view(shape)  # rows of the concatenated table
        else:  # already reduced modulo the (power-of-two) table size, see above
            # int64 rows: index_select's CPU backward is a scatter-add for int64 indices (it
            # fell back to a 10x slower index_add_ with int32 ones).
            index = index + offsets.view(shape)

        # One gather for all levels and corners of the group; its backward is a scatter-add.
        values = table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[1])
        values = values.to(weight.dtype)  # no-op for the float32 table
        jac = None
        if weight_slopes:  # [Lg, N, d, C] x [Lg, N, C, F] -> [Lg, N, d, F]
            slopes = torch.stack(weight_slopes, dim=2)
            jac = (slopes.unsqueeze(-1) * values.unsqueeze(2)).sum(dim=3)
        if values.device.type == "cpu":
            # [Lg, N, 1, C] @ [Lg, N, C, F]: 4x faster on CPU than multiply-and-sum ...
            return torch.matmul(weight.unsqueeze(-2), values).squeeze(-2), jac
        # ... but 13x slower on an H100 (batched tiny matrix products), where this is fast.
        return (values * weight.unsqueeze(-1)).sum(dim=2), jac
