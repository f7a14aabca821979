"""The rasterizer interface shared by every backend (nvdiffrast's semantics).

Conventions (identical for all backends):

* ``pos_clip`` -- clip-space vertices ``[B, V, 4]`` (or ``[V, 4]``, read as ``B = 1``).
* ``tri`` -- vertex indices ``[F, 3]`` (any integer dtype).
* ``rast`` -- ``[B, H, W, 4]`` holding ``(u, v, z/w, triangle_id + 1)``; ``0`` in the last channel
  means no triangle covers the pixel. ``u, v`` are the perspective-correct barycentric weights of
  the triangle's vertices 0 and 1 (vertex 2 gets ``1 - u - v``). Triangle ids are stored as floats,
  exact up to 2**24 triangles (as in nvdiffrast).
* Pixel ``(row i, column j)`` samples NDC ``x = 2 (j + 0.5) / W - 1``, ``y = 2 (i + 0.5) / H - 1``:
  row 0 lies at ``y = -1``. ``studio.data.cameras.projection_matrix`` flips y, so with our cameras
  row 0 is the top of the image.
* Depth test: the smallest ``z/w`` wins; fragments outside ``-1 <= z/w <= 1`` (in front of the near
  plane or behind the far plane) are dropped; there is no back-face culling.
* ``antialias`` blends the two pixels of each horizontally or vertically adjacent pair straddling
  a silhouette edge by the fraction of the pixel the edge covers (nvdiffrast's analytic
  antialiasing; :mod:`studio.rasterize.antialias` spells it out), leaves every other pixel as it
  is, and is differentiable w.r.t. the colours and, through the edges' positions, the vertices:
  the only source of silhouette (visibility) gradients in the pipeline.
* ``texture`` follows ``nvdiffrast.torch.texture`` for 2D textures without mipmaps:
  :mod:`studio.rasterize.texture` states the conventions (``uv = (0, 0)`` is the corner of the
  texture's first row, texel centres at ``(j + 0.5) / Wt``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from studio.errors import StudioError


class Rasterizer(abc.ABC):
    """Rasterize triangles, interpolate vertex attributes, antialias silhouettes, sample
    textures."""

    #: Backend name as used by ``studio.backends`` (``"torch"`` or ``"nvdiffrast"``).
    name: str = ""

    @abc.abstractmethod
    def rasterize(
        self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: Sequence[int]
    ) -> torch.Tensor:
        """``rast [B, H, W, 4]`` for clip-space vertices ``pos_clip`` and triangles ``tri``."""

    @abc.abstractmethod
    def interpolate(
        self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor
    ) -> torch.Tensor:
        """Per-pixel attributes ``[B, H, W, C]`` from vertex attributes ``[B, V, C]`` or ``[V, C]``
        (zero where no triangle covers the pixel); differentiable w.r.t. ``attr``."""

    @abc.abstractmethod
    def antialias(
        self,
        color: torch.Tensor,
        rast: torch.Tensor,
        pos_clip: torch.Tensor,
        tri: torch.Tensor,
    ) -> torch.Tensor:
        """``color [B, H, W, C]`` with silhouette edges antialiased, differentiable w.r.t.
        ``color`` and ``pos_clip`` (the positions ``rast`` was rasterized from)."""

    @abc.abstractmethod
    def texture(
        self,
        tex: torch.Tensor,
        uv: torch.Tensor,
        filter_mode: str = "linear",
        boundary_mode: str = "wrap",
    ) -> torch.Tensor:
        """Samples ``[B, H, W, C]`` of ``tex [B or 1, Ht, Wt, C]`` at ``uv [B, H, W, 2]``
        (``filter_mode`` ``linear``/``nearest``, ``boundary_mode`` ``wrap``/``clamp``);
        bilinear samples are differentiable w.r.t. ``tex`` and ``uv``."""


def batched_positions(pos_clip: torch.Tensor) -> torch.Tensor:
    """``pos_clip`` as ``[B, V, 4]``; a clear error for any other shape."""
    if pos_clip.dim() == 2:
        pos_clip = pos_clip[None]
    if pos_clip.dim() != 3 or pos_clip.shape[-1] != 4:
        raise StudioError(
            f"Clip-space positions must have shape [B, V, 4] or [V, 4], got "
            f"{tuple(pos_clip.shape)}; append w (e.g. torch.cat([v, ones], -1) @ mvp.T)."
        )
    return pos_clip


def batched_attributes(attr: torch.Tensor) -> torch.Tensor:
    """Vertex attributes as ``[B, V, C]`` (``[V, C]`` becomes ``[1, V, C]``, shared by the batch)."""
    if attr.dim() == 2:
        attr = attr[None]
    if attr.dim() != 3:
        raise StudioError(
            f"Vertex attributes must have shape [B, V, C] or [V, C], got {tuple(attr.shape)}."
        )
    return attr


def check_triangles(tri: torch.Tensor) -> None:
    if tri.dim() != 2 or tri.shape[-1] != 3 or tri.dtype.is_floating_point:
        raise StudioError(
            f"Triangles must be an integer tensor of shape [F, 3], got {tuple(tri.shape)} "
            f"({tri.dtype})."
        )


def check_resolution(resolution: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` as two positive ints."""
    if len(resolution) != 2 or any(int(r) <= 0 for r in resolution):
        raise StudioError(
            f"The rasterizer resolution must be (height, width) with positive sizes, got "
            f"{tuple(resolution)}."
        )
    return int(resolution[0]), int(resolution[1])
