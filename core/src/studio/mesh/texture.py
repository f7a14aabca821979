"""Texture baking: colour every texel of a UV atlas by querying the 3D field at its surface point.

The atlas is rasterized with UVs as clip coordinates ``(2u - 1, 2v - 1, 0, 1)``; each covered
texel gets the world position interpolated from its triangle, and ``query(points)`` colours it.
Texels no triangle covers are filled from their neighbours (OpenCV Telea inpainting over
``padding`` pixels, then nearest-colour dilation for anything left) so bilinear lookups and
mip-maps near chart seams do not pull in black.

Returned images have row ``i`` covering ``v`` in ``[i/H, (i+1)/H)``; pass them to the writers of
:mod:`studio.mesh.io` unchanged (they write ``vt u (1 - v)`` for OBJ, so no row flip here).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from studio.mesh.isosurface import evaluate_chunked

QueryFn = Callable[[torch.Tensor], torch.Tensor]


def rasterize_uv_atlas(
    v_tex: torch.Tensor, t_tex_idx: torch.Tensor, size: int, rasterizer
) -> torch.Tensor:
    """``rast [size, size, 4]`` of the UV layout (``u`` along columns, ``v`` along rows)."""
    clip = torch.cat(
        [v_tex * 2.0 - 1.0, torch.zeros_like(v_tex[:, :1]), torch.ones_like(v_tex[:, :1])], dim=-1
    )
    return rasterizer.rasterize(clip[None].float(), t_tex_idx.to(torch.int32), (size, size))[0]


def bake_texture(
    v_pos_per_uv: torch.Tensor,
    v_tex: torch.Tensor,
    t_tex_idx: torch.Tensor,
    query: QueryFn,
    size: int,
    rasterizer,
    *,
    padding: int = 2,
    chunk: int = 262144,
) -> tuple[np.ndarray, np.ndarray]:
    """``(texture [size, size, C] float32, coverage mask [size, size] bool)``.

    ``v_pos_per_uv[i]`` is the world position of UV vertex ``i`` (xatlas splits vertices at seams,
    so positions are indexed like the UVs); ``query`` maps world points ``[N, 3]`` to colours
    ``[N, C]`` in [0, 1].
    """
    rast = rasterize_uv_atlas(v_tex, t_tex_idx, size, rasterizer)
    mask = rast[..., 3] > 0
    positions = rasterizer.interpolate(v_pos_per_uv[None].float(), rast[None], t_tex_idx.int())[0]
    points = positions[mask]
    with torch.no_grad():
        colors = evaluate_chunked(query, points, chunk)
    texture = torch.zeros(size, size, colors.shape[-1], dtype=torch.float32, device=colors.device)
    texture[mask] = colors.float().clamp(0.0, 1.0)
    image = texture.cpu().numpy()
    coverage = mask.cpu().numpy()
    return fill_uncovered(image, coverage, padding), coverage


def fill_uncovered(image: np.ndarray, covered: np.ndarray, padding: int) -> np.ndarray:
    """Fill texels outside the charts: Telea inpainting near the charts, nearest colour beyond."""
    import cv2
    from scipy import ndimage

    if covered.all() or not covered.any():
        return image
    holes = (~covered).astype(np.uint8)
    as_bytes = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    channels = as_bytes.shape[-1]
    filled = np.empty_like(image)
    for start in range(0, channels, 3):  # cv2.inpaint takes 1 or 3 channels
        part = as_bytes[..., start : start + 3]
        painted = cv2.inpaint(np.ascontiguousarray(part), holes, max(padding, 1), cv2.INPAINT_TELEA)
        filled[..., start : start + 3] = painted.reshape(part.shape) / 255.0
    filled[covered] = image[covered]  # keep the exact baked values where the charts are
    near = ndimage.binary_dilation(covered, iterations=max(padding, 1))
    _, (rows, cols) = ndimage.distance_transform_edt(~near, return_indices=True)
    return np.where(near[..., None], filled, filled[rows, cols]).astype(np.float32)
