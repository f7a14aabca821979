"""nvdiffrast's CUDA rasterizer (``RasterizeCudaContext``; the OpenGL context is never used).

Inputs are converted to what nvdiffrast requires (contiguous float32 positions/attributes/textures,
int32 triangles, CUDA tensors); outputs are nvdiffrast's own (``rasterize``, ``interpolate``,
``antialias`` and ``texture`` without mipmaps). The plugin is loaded through
:func:`studio.rasterize.nvdiffrast_compat.load_nvdiffrast`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch

from studio.errors import StudioError
from studio.rasterize.base import (
    Rasterizer,
    batched_attributes,
    batched_positions,
    check_resolution,
    check_triangles,
)
from studio.rasterize.nvdiffrast_compat import load_nvdiffrast
from studio.rasterize.texture import check_texture_arguments


def _cuda_float(t: torch.Tensor) -> torch.Tensor:
    if not t.is_cuda:
        raise StudioError(
            "The nvdiffrast rasterizer needs CUDA tensors; move the mesh and cameras to the GPU "
            "or use the rasterizer backend 'torch' on the CPU."
        )
    return t.float().contiguous()


def _int_triangles(tri: torch.Tensor, device: torch.device) -> torch.Tensor:
    check_triangles(tri)
    return tri.to(device=device, dtype=torch.int32).contiguous()


class NvdiffrastRasterizer(Rasterizer):
    """nvdiffrast ``rasterize`` / ``interpolate`` / ``antialias`` / ``texture`` on a CUDA
    context."""

    name = "nvdiffrast"

    def __init__(self, device: Optional[torch.device | str] = None):
        device = torch.device(device) if device is not None else torch.device("cuda")
        if device.type != "cuda":
            raise StudioError(
                f"The nvdiffrast rasterizer runs on CUDA devices only, not {device}; use the "
                f"rasterizer backend 'torch' (or 'auto')."
            )
        self.dr: Any = load_nvdiffrast()
        self.context = self.dr.RasterizeCudaContext(device=device)

    def rasterize(
        self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: Sequence[int]
    ) -> torch.Tensor:
        pos = _cuda_float(batched_positions(pos_clip))
        height, width = check_resolution(resolution)
        tri = _int_triangles(tri, pos.device)
        rast, _ = self.dr.rasterize(self.context, pos, tri, (height, width), grad_db=True)
        return rast

    def interpolate(
        self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor
    ) -> torch.Tensor:
        attr = _cuda_float(batched_attributes(attr))
        out, _ = self.dr.interpolate(attr, rast, _int_triangles(tri, attr.device))
        return out

    def antialias(
        self,
        color: torch.Tensor,
        rast: torch.Tensor,
        pos_clip: torch.Tensor,
        tri: torch.Tensor,
    ) -> torch.Tensor:
        pos = _cuda_float(batched_positions(pos_clip))
        tri = _int_triangles(tri, pos.device)
        return self.dr.antialias(_cuda_float(color), rast, pos, tri)

    def texture(
        self,
        tex: torch.Tensor,
        uv: torch.Tensor,
        filter_mode: str = "linear",
        boundary_mode: str = "wrap",
    ) -> torch.Tensor:
        check_texture_arguments(tex, uv, filter_mode, boundary_mode)
        return self.dr.texture(
            _cuda_float(tex),
            _cuda_float(uv),
            filter_mode=filter_mode,
            boundary_mode=boundary_mode,
        )
