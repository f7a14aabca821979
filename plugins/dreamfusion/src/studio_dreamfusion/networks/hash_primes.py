"""tiny-cuda-nn's hash factors, shared by the PyTorch hash grid and its Triton kernels."""

from __future__ import annotations

#: tiny-cuda-nn's "CoherentPrime" hash factors, one per input dimension.
PRIMES: tuple[int, ...] = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
