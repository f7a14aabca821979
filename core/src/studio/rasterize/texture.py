"""2D texture sampling in pure PyTorch with nvdiffrast's ``texture`` conventions (no mipmaps).

* ``tex [B or 1, Ht, Wt, C]`` (a batch of one is shared by all images), ``uv [B, H, W, 2]``.
* ``uv = (0, 0)`` is the corner of the *first* row and column of ``tex`` (nvdiffrast stores images
  bottom-up, so that is the bottom-left corner there); ``u`` runs along a row (columns), ``v``
  along the rows. Texel ``(row i, column j)`` has its centre at ``((j + 0.5) / Wt, (i + 0.5) / Ht)``.
* ``filter_mode``: ``linear`` (bilinear between the four nearest texel centres; differentiable
  w.r.t. ``tex`` and ``uv``) or ``nearest`` (the texel containing ``uv``; differentiable w.r.t.
  ``tex`` only).
* ``boundary_mode``: ``wrap`` (``uv`` taken modulo 1, bilinear filtering wraps around the edges) or
  ``clamp`` (coordinates clamped to the centres of the boundary texels).
"""

from __future__ import annotations

import torch

from studio.errors import StudioError
from studio.indexing import take_batched_rows

FILTER_MODES = ("linear", "nearest")
BOUNDARY_MODES = ("wrap", "clamp")


def check_texture_arguments(
    tex: torch.Tensor, uv: torch.Tensor, filter_mode: str, boundary_mode: str
) -> None:
    """Raise :class:`StudioError` unless the arguments follow the conventions above."""
    if tex.dim() != 4 or uv.dim() != 4 or uv.shape[-1] != 2:
        raise StudioError(
            f"texture() needs tex [B, Ht, Wt, C] and uv [B, H, W, 2], got {tuple(tex.shape)} and "
            f"{tuple(uv.shape)}; cube maps and 3D textures are not supported."
        )
    if tex.shape[0] not in (1, uv.shape[0]):
        raise StudioError(
            f"texture(): {tex.shape[0]} textures for {uv.shape[0]} uv images; pass one texture "
            f"per image or a single shared one (batch 1)."
        )
    if filter_mode not in FILTER_MODES:
        raise StudioError(
            f"texture(): filter_mode {filter_mode!r} is not supported; use one of "
            f"{', '.join(FILTER_MODES)} (mipmapped filtering is not implemented)."
        )
    if boundary_mode not in BOUNDARY_MODES:
        raise StudioError(
            f"texture(): boundary_mode {boundary_mode!r} is not supported; use one of "
            f"{', '.join(BOUNDARY_MODES)}."
        )


def texel_coordinates(
    coord: torch.Tensor, size: int, boundary_mode: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis: ``(index_0, index_1, fraction)`` for texture coordinates
    ``coord`` over ``size`` texels (``value = (1 - fraction) tex[index_0] + fraction tex[index_1]``)."""
    if boundary_mode == "wrap":
        x = (coord - coord.detach().floor()) * size - 0.5
        lower = x.detach().floor()
        index_0 = lower.long().remainder(size)
        index_1 = (index_0 + 1).remainder(size)
    else:
        x = (coord * size - 0.5).clamp(0.0, size - 1.0)
        lower = x.detach().floor()
        index_0 = lower.long()
        index_1 = (index_0 + 1).clamp(max=size - 1)
    return index_0, index_1, x - lower


def nearest_texel(coord: torch.Tensor, size: int, boundary_mode: str) -> torch.Tensor:
    """Index of the texel containing texture coordinate ``coord`` (over ``size`` texels)."""
    coord = coord.detach()
    if boundary_mode == "wrap":
        return ((coord - coord.floor()) * size).floor().long().remainder(size)
    return (coord * size).floor().long().clamp(0, size - 1)


def sample_texture(
    tex: torch.Tensor,
    uv: torch.Tensor,
    filter_mode: str = "linear",
    boundary_mode: str = "wrap",
) -> torch.Tensor:
    """``[B, H, W, C]`` samples of ``tex`` at ``uv`` (see the module docstring)."""
    check_texture_arguments(tex, uv, filter_mode, boundary_mode)
    batch, height, width, _ = uv.shape
    tex_batch, tex_height, tex_width, channels = tex.shape
    flat = tex.reshape(tex_batch, tex_height * tex_width, channels)
    shared = torch.zeros(1, 1, dtype=torch.long, device=uv.device)
    image = torch.arange(batch, device=uv.device)[:, None] if tex_batch > 1 else shared
    u, v = uv[..., 0].reshape(batch, -1), uv[..., 1].reshape(batch, -1)

    def fetch(row: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
        return take_batched_rows(flat, image, row * tex_width + column)

    if filter_mode == "nearest":
        out = fetch(
            nearest_texel(v, tex_height, boundary_mode), nearest_texel(u, tex_width, boundary_mode)
        )
        return out.reshape(batch, height, width, channels)
    column_0, column_1, fx = texel_coordinates(u, tex_width, boundary_mode)
    row_0, row_1, fy = texel_coordinates(v, tex_height, boundary_mode)
    fx, fy = fx[..., None].to(tex.dtype), fy[..., None].to(tex.dtype)
    along_row_0 = torch.lerp(fetch(row_0, column_0), fetch(row_0, column_1), fx)
    along_row_1 = torch.lerp(fetch(row_1, column_0), fetch(row_1, column_1), fx)
    return torch.lerp(along_row_0, along_row_1, fy).reshape(batch, height, width, channels)
