"""Row gathers whose gradients are the same on every run (deterministic on the CPU).

``source[index]`` with a LongTensor ``index`` is differentiated by ``index_put_(accumulate=True)``,
whose CPU kernel adds the gradients of repeated indices in an order that depends on thread
timing: the gradient of a mesh vertex shared by several faces then differs in its last bits from
run to run (measured with torch 2.13 on 2 threads), and a resumed run no longer ends bit-identical
to an uninterrupted one. ``torch.index_select`` is differentiated by ``index_add_``, which adds
in index order on the CPU. (On CUDA both use atomic adds; studio promises bit-identical resumes on
the CPU only.)
"""

from __future__ import annotations

import torch


def take_rows(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``source[index]``: rows of ``source`` (along its first dimension) for a LongTensor
    ``index`` of any shape, shaped ``[*index.shape, *source.shape[1:]]``."""
    rows = torch.index_select(source, 0, index.reshape(-1))
    return rows.reshape(*index.shape, *source.shape[1:])


def take_batched_rows(
    source: torch.Tensor, batch: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """``source[batch, index]`` for ``source [B, N, ...]`` and broadcastable LongTensors
    ``batch`` and ``index``, through :func:`take_rows` (flattened ``[B * N, ...]``)."""
    flat = source.reshape(-1, *source.shape[2:])
    return take_rows(flat, batch * source.shape[1] + index)
