"""Texture baking: colour every texel of a UV atlas by querying the 3D field at its surface point.

The atlas is rasterized with UVs as clip coordinates ``(2u - 1, 2v - 1, 0, 1)``; each covered
texel gets the world position interpolated from its triangle, and ``query(points)`` colours it
(:func:`bake_textures` bakes several named channels, e.g. albedo, metallic, roughness and a
tangent-space normal map, from one query per chunk of texels).
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

QueryFn = Callable[[torch.Tensor], torch.Tensor]
ChannelsFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def rasterize_uv_atlas(
    v_tex: torch.Tensor, t_tex_idx: torch.Tensor, size: int, rasterizer
) -> torch.Tensor:
    """``rast [size, size, 4]`` of the UV layout (``u`` along columns, ``v`` along rows)."""
    clip = torch.cat(
        [v_tex * 2.0 - 1.0, torch.zeros_like(v_tex[:, :1]), torch.ones_like(v_tex[:, :1])], dim=-1
    )
    return rasterizer.rasterize(clip[None].float(), t_tex_idx.to(torch.int32), (size, size))[0]


def bake_textures(
    v_pos_per_uv: torch.Tensor,
    v_tex: torch.Tensor,
    t_tex_idx: torch.Tensor,
    query: ChannelsFn,
    size: int,
    rasterizer,
    *,
    padding: int = 2,
    chunk: int = 262144,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Several textures of one atlas in one pass: ``({name: [size, size, C] float32}, coverage
    mask [size, size] bool)``.

    The atlas is rasterized once and ``query`` is called once per ``chunk`` of covered texels;
    it maps world points ``[N, 3]`` to a dict of channels ``{name: [N, C]}`` in [0, 1] (the
    same names for every chunk), and each entry becomes its own image, filled outside the charts
    on its own. ``v_pos_per_uv[i]`` is the world position of UV vertex ``i`` (xatlas splits
    vertices at seams, so positions are indexed like the UVs).
    """
    rast = rasterize_uv_atlas(v_tex, t_tex_idx, size, rasterizer)
    mask = rast[..., 3] > 0
    positions = rasterizer.interpolate(v_pos_per_uv[None].float(), rast[None], t_tex_idx.int())[0]
    points = positions[mask]
    parts = [points] if chunk <= 0 or chunk >= len(points) else list(points.split(chunk))
    with torch.no_grad():
        outputs = [query(part) for part in parts]
    names = list(outputs[0])
    for output in outputs[1:]:
        if list(output) != names:
            raise ValueError(f"the bake query gave channels {list(output)} after {names}")
    coverage = mask.cpu().numpy()
    images = {}
    for name in names:
        values = torch.cat([output[name] for output in outputs])
        if values.ndim != 2 or len(values) != len(points):
            raise ValueError(
                f"the bake query's channel {name!r} must have shape [N, C] for N = {len(points)} "
                f"points; got {list(values.shape)}"
            )
        texture = torch.zeros(size, size, values.shape[-1], dtype=torch.float32, device=mask.device)
        texture[mask] = values.float().clamp(0.0, 1.0).to(mask.device)
        images[name] = fill_uncovered(texture.cpu().numpy(), coverage, padding)
    return images, coverage


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

    One texture of :func:`bake_textures`: ``query`` maps world points ``[N, 3]`` to colours
    ``[N, C]`` in [0, 1].
    """
    images, coverage = bake_textures(
        v_pos_per_uv,
        v_tex,
        t_tex_idx,
        lambda points: {"texture": query(points)},
        size,
        rasterizer,
        padding=padding,
        chunk=chunk,
    )
    return images["texture"], coverage


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
