"""Data-parallel helpers over ``torch.distributed`` (NCCL on CUDA, gloo on CPU).

Processes are started torchrun-style (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT`` in the environment) by :mod:`studio.training.launch` or by torchrun itself. With a
world of one, every function here is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> list[int]:
        """Indices of ``range(n)`` this rank handles (round-robin)."""
        return list(range(self.rank, n, self.world_size))


def context_from_env() -> DistContext:
    return DistContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def select_device(accelerator: str, ctx: DistContext) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is wanted and present, else CPU."""
    from studio.errors import ConfigError

    if os.environ.get("STUDIO_FORCE_CPU") == "1":  # set by the launcher for CPU (gloo) workers
        return torch.device("cpu")
    use_cuda = accelerator == "cuda" or (accelerator == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.accelerator=cuda but torch sees no CUDA device; use trainer.accelerator=auto "
            "or cpu, or install a CUDA build of torch."
        )
    if use_cuda:
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    if not ctx.active or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size, **kwargs)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Make every rank's parameters and buffers equal to rank 0's."""
    if not ctx.active:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: list[nn.Parameter], ctx: DistContext) -> None:
    """All-reduce (mean) the gradients of ``params``, coalesced into one buffer per dtype.

    A parameter without a gradient on some rank counts as a zero gradient there, so every rank
    enters the same collectives.
    """
    if not ctx.active:
        return
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(ctx.world_size)
        offset = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def any_rank(flags: list[bool], ctx: DistContext, device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags across ranks (so all ranks stop at the same step)."""
    if not ctx.active:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (on every rank), in rank order."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def synchronised(ctx: DistContext) -> bool:
    """Whether ``ctx`` spans several processes joined in a process group."""
    return ctx.active and dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def main_rank_first(ctx: DistContext | None = None) -> Iterator[bool]:
    """Run the block on rank 0 first, then on every other rank (after a barrier).

    For work whose result rank 0 leaves on disk for the others (encode prompts into a cache,
    download a model): the other ranks run the same block afterwards and find the work done.
    Yields whether this is the main rank. Without a process group it is a plain block."""
    ctx = ctx or context_from_env()
    together = synchronised(ctx)
    if together and not ctx.is_main:
        barrier(ctx)
    try:
        yield ctx.is_main
    finally:
        if together and ctx.is_main:
            barrier(ctx)
