"""Mesh rasterization behind one interface (nvdiffrast's semantics), two backends.

``make_rasterizer("auto" | "nvdiffrast" | "torch", device)`` returns a :class:`Rasterizer`:
nvdiffrast's CUDA context when it is installed and ``device`` is a CUDA device, else the pure
PyTorch rasterizer. See :mod:`studio.rasterize.base` for the conventions shared by both.
"""

from __future__ import annotations

from typing import Optional

import torch

from studio.backends import choose
from studio.rasterize.base import Rasterizer

__all__ = ["Rasterizer", "make_rasterizer", "triangle_ids"]


def make_rasterizer(
    backend: str = "auto", device: Optional[torch.device | str] = None
) -> Rasterizer:
    """The rasterizer for ``backend`` (``auto``, ``nvdiffrast`` or ``torch``) on ``device``.

    ``auto`` picks nvdiffrast for CUDA devices when it is importable, PyTorch otherwise; asking for
    a backend that cannot run raises :class:`studio.errors.ConfigError`.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    name = choose("rasterizer", backend, cuda=device.type == "cuda" and torch.cuda.is_available())
    if name == "nvdiffrast":
        from studio.rasterize.nvdiffrast_backend import NvdiffrastRasterizer

        return NvdiffrastRasterizer(device)
    from studio.rasterize.torch_backend import TorchRasterizer

    return TorchRasterizer()


def triangle_ids(rast: torch.Tensor) -> torch.Tensor:
    """Integer triangle index per pixel ``[B, H, W]`` (``-1`` where empty) from a ``rast``."""
    return rast[..., 3].detach().round().long() - 1
