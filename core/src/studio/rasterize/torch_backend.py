"""A pure-PyTorch rasterizer with nvdiffrast's outputs (runs anywhere, no extension to build).

How a frame is rasterized (``TorchRasterizer.rasterize``):

1. Per (image, triangle) pair: 2D-homogeneous edge functions ``E_i(x, y) = (V_j x V_k) . (x, y, 1)``
   with ``V = (X, Y, W)`` in clip space (Olano & Greer). A pixel is covered, in front of the camera,
   exactly when all three ``E_i`` share the sign of the triangle's determinant, so vertices behind
   the camera (``w <= 0``) need no special case; the perspective-correct barycentrics are
   ``E_i / sum(E)``. The screen bounding box is taken from the triangle clipped to the near plane
   ``z + w >= 0`` (the whole screen if the clipped triangle still reaches ``w <= 0``).
2. The candidate pixels inside every bounding box are enumerated (``repeat_interleave`` over box
   sizes), in chunks of at most ``max_candidates`` pixels, never as an ``F x H x W`` tensor.
3. Shared edges: the edge function of an edge seen from its two triangles is computed as the exact
   floating-point negation of the other, and a pixel lying exactly on an edge belongs to the side
   whose (sign-normalised) edge normal points to +x (or +y when vertical): no pixel of a closed
   mesh is left empty or drawn twice.
4. Depth: one ``int64`` key per fragment, ``(order-preserving bits of z/w) << 31 | triangle id``,
   reduced per pixel with ``scatter_reduce("amin")``: nearest wins, ties go to the lowest id.
5. The winners' barycentrics and ``z/w`` are recomputed from ``pos_clip`` in float64 (float32
   edge functions lose ~1e-4 to cancellation on small triangles) with autograd on, so
   ``interpolate`` is differentiable w.r.t. the attributes *and* (through ``u, v``) the vertex
   positions, like nvdiffrast's ``rasterize`` backward (interior gradients; no silhouette gradients,
   which come from ``antialias``).

``antialias`` is nvdiffrast's analytic silhouette antialiasing written in PyTorch
(:mod:`studio.rasterize.antialias`): pixel pairs straddling a silhouette edge are blended by the
edge's coverage, which gives the silhouette gradients w.r.t. the vertex positions. The edge-to-
triangles map it needs is cached for the last ``tri`` tensor seen (while that tensor is alive and
unmodified). ``texture`` samples 2D textures with nvdiffrast's conventions
(:mod:`studio.rasterize.texture`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Optional

import torch

from studio.errors import StudioError
from studio.indexing import take_batched_rows
from studio.rasterize.antialias import EdgeTopology, antialias, edge_topology
from studio.rasterize.base import (
    Rasterizer,
    batched_attributes,
    batched_positions,
    check_resolution,
    check_triangles,
)
from studio.rasterize.edges import edge_coefficients, evaluate_edges, pixel_centres_ndc
from studio.rasterize.texture import sample_texture

TRIANGLE_BITS = 31
EMPTY_KEY = torch.iinfo(torch.int64).max


def orderable_depth(z: torch.Tensor) -> torch.Tensor:
    """Non-negative ``int64 < 2**32`` keys ordered like the float32 values ``z`` (no NaNs)."""
    bits = (z.float() + 0.0).contiguous().view(torch.int32).to(torch.int64)  # +0.0: no -0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return ordered + 2**31


def screen_boxes(
    verts: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conservative pixel boxes ``(col0, col1, row0, row1, nonempty)`` of triangles ``[N, 3, 4]``.

    The box bounds the triangle clipped to the near plane ``z + w >= 0``: its vertices in front of
    the plane and the points where its edges cross it. A clipped triangle that still reaches
    ``w <= 0`` cannot be bounded on screen and gets the whole screen (the per-pixel test is exact).
    """
    near = verts[..., 2] + verts[..., 3]
    other, near_other = verts.roll(-1, dims=1), near.roll(-1, dims=1)
    crosses = near * near_other < 0
    t = torch.where(crosses, near / torch.where(crosses, near - near_other, 1.0), 0.0)
    points = torch.cat([verts, verts + t[..., None] * (other - verts)], dim=1)
    valid = torch.cat([near >= 0, crosses], dim=1)
    w = points[..., 3]
    projectable = valid & (w > 0)
    unbounded = (valid & ~(w > 0)).any(dim=1)
    safe_w = torch.where(projectable, w, 1.0)
    inf = torch.full_like(w, float("inf"))
    x, y = points[..., 0] / safe_w, points[..., 1] / safe_w
    x_lo = torch.where(projectable, x, inf).amin(dim=1)
    x_hi = torch.where(projectable, x, -inf).amax(dim=1)
    y_lo = torch.where(projectable, y, inf).amin(dim=1)
    y_hi = torch.where(projectable, y, -inf).amax(dim=1)

    def pixel_range(lo: torch.Tensor, hi: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
        # pixel j's centre is at (x + 1) size / 2 - 0.5; the box holds the centres in [lo, hi],
        # widened by a small margin for rounding (the per-pixel test decides exactly)
        margin = 1e-2 + 1e-6 * size
        first = ((lo + 1.0) * size / 2 - 0.5 - margin).clamp(-1.0, size + 1.0).ceil().long()
        last = ((hi + 1.0) * size / 2 - 0.5 + margin).clamp(-1.0, size + 1.0).floor().long()
        first = torch.where(unbounded, 0, first.clamp(min=0))
        last = torch.where(unbounded, size - 1, last.clamp(max=size - 1))
        return first, last

    col0, col1 = pixel_range(x_lo, x_hi, width)
    row0, row1 = pixel_range(y_lo, y_hi, height)
    nonempty = (valid.any(dim=1)) & (col0 <= col1) & (row0 <= row1)
    return col0, col1, row0, row1, nonempty


def chunk_bounds(counts: torch.Tensor, budget: int) -> list[tuple[int, int, int]]:
    """``(first, end, n_candidates)`` ranges of consecutive items of about ``budget`` candidates.

    An item starts a new chunk when its first candidate falls past a multiple of ``budget``; a chunk
    therefore holds at most ``budget`` plus one item's candidates.
    """
    if counts.numel() == 0:
        return []
    cumulative = counts.cumsum(0).cpu()
    starts = cumulative - counts.cpu()
    _, sizes = torch.unique_consecutive(starts // budget, return_counts=True)
    ends = sizes.cumsum(0).tolist()
    bounds, first, done = [], 0, 0
    for end in ends:
        total = int(cumulative[end - 1]) - done
        bounds.append((first, end, total))
        first, done = end, done + total
    return bounds


def visible_triangles(
    pos: torch.Tensor, tri: torch.Tensor, height: int, width: int, max_candidates: int
) -> torch.Tensor:
    """Winning triangle id per pixel ``[B * H * W]`` (``-1`` where empty); not differentiable."""
    batch, n_faces = pos.shape[0], tri.shape[0]
    verts = pos[:, tri].reshape(batch * n_faces, 3, 4)
    coeffs, det = edge_coefficients(verts)
    col0, col1, row0, row1, nonempty = screen_boxes(verts, height, width)
    finite = torch.isfinite(verts).flatten(1).all(dim=1)
    keep = (nonempty & finite & (det != 0)).nonzero().squeeze(1)

    # per kept (image, triangle) instance: sign-normalised edges and which edges own ties
    sign = det[keep].sign()[:, None, None]
    coeffs = coeffs[keep] * sign
    owned = (coeffs[..., 0] > 0) | ((coeffs[..., 0] == 0) & (coeffs[..., 1] > 0))
    z_w = verts[keep][..., [2, 3]]
    image = torch.div(keep, n_faces, rounding_mode="floor")
    face = keep - image * n_faces
    box_w = col1[keep] - col0[keep] + 1
    counts = box_w * (row1[keep] - row0[keep] + 1)
    boxes = torch.stack([col0[keep], row0[keep], box_w], dim=1)  # first column, first row, width

    best = torch.full((batch * height * width,), EMPTY_KEY, dtype=torch.int64, device=pos.device)
    for first, end, total in chunk_bounds(counts, max_candidates):
        sl = slice(first, end)
        owner = torch.repeat_interleave(
            torch.arange(end - first, device=pos.device), counts[sl], output_size=total
        )
        start = counts[sl].cumsum(0) - counts[sl]
        local = torch.arange(total, device=pos.device) - start.index_select(0, owner)
        box = boxes[sl].index_select(0, owner)
        row = torch.div(local, box[:, 2], rounding_mode="floor")
        px, py = box[:, 0] + local - row * box[:, 2], box[:, 1] + row
        x, y = pixel_centres_ndc(px, py, height, width, pos.dtype)
        edges = evaluate_edges(coeffs[sl].index_select(0, owner), x, y)
        hit = (edges >= 0).all(dim=1).nonzero().squeeze(1)
        edges, owner, px, py = edges[hit], owner[hit], px[hit], py[hit]
        zw_of = z_w[sl].index_select(0, owner)
        denominator = (edges * zw_of[..., 1]).sum(dim=1)
        depth = (edges * zw_of[..., 0]).sum(dim=1) / torch.where(denominator > 0, denominator, 1)
        # a pixel centre exactly on an edge belongs to the triangle that owns that edge
        ties_ok = ((edges > 0) | owned[sl].index_select(0, owner)).all(dim=1)
        ok = ties_ok & (denominator > 0) & (depth >= -1.0) & (depth <= 1.0)
        owner, px, py, depth = owner[ok], px[ok], py[ok], depth[ok]
        key = (orderable_depth(depth) << TRIANGLE_BITS) | face[sl].index_select(0, owner)
        pixel = (image[sl].index_select(0, owner) * height + py) * width + px
        best.scatter_reduce_(0, pixel, key, reduce="amin", include_self=True)

    winner = best & ((1 << TRIANGLE_BITS) - 1)
    return torch.where(best == EMPTY_KEY, -1, winner)


def rast_from_triangle_ids(
    pos: torch.Tensor, tri: torch.Tensor, winner: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """``rast [B, H, W, 4]`` for the given winning ids, differentiable w.r.t. ``pos``."""
    batch = pos.shape[0]
    index = (winner >= 0).nonzero().squeeze(1)
    face = winner[index]
    image = torch.div(index, height * width, rounding_mode="floor")
    pixel = index - image * height * width
    py = torch.div(pixel, width, rounding_mode="floor")
    px = pixel - py * width
    # float64: the homogeneous edge functions cancel badly in float32 for small triangles
    verts = pos[image[:, None], tri[face]].double()
    coeffs, _ = edge_coefficients(verts)
    x, y = pixel_centres_ndc(px, py, height, width, torch.float64)
    edges = evaluate_edges(coeffs, x, y)
    bary = edges / edges.sum(dim=1, keepdim=True)
    depth = (bary * verts[..., 2]).sum(dim=1) / (bary * verts[..., 3]).sum(dim=1)
    values = torch.stack([bary[:, 0], bary[:, 1], depth, (face + 1).double()], dim=1)
    values = values.to(pos.dtype)
    rast = torch.index_put(pos.new_zeros(batch * height * width, 4), (index,), values)
    return rast.reshape(batch, height, width, 4)


class TorchRasterizer(Rasterizer):
    """The always-available backend (CPU or CUDA tensors).

    ``max_candidates`` bounds the pixel candidates tested at once by ``rasterize`` (memory ~ 100
    bytes each; default 2**21 on CPU, 2**23 on CUDA), ``max_pairs`` the pixel pairs examined at once
    by ``antialias`` (~ 0.5 kB each; default 2**18 on CPU, 2**20 on CUDA).
    """

    name = "torch"

    def __init__(self, max_candidates: Optional[int] = None, max_pairs: Optional[int] = None):
        self.max_candidates = max_candidates
        self.max_pairs = max_pairs
        self._topology: Optional[tuple[weakref.ref, int, str, EdgeTopology]] = None

    def _budget(self, device: torch.device) -> int:
        if self.max_candidates is not None:
            return max(1, int(self.max_candidates))
        return 1 << 23 if device.type == "cuda" else 1 << 21

    def _pair_budget(self, device: torch.device) -> int:
        if self.max_pairs is not None:
            return max(1, int(self.max_pairs))
        return 1 << 20 if device.type == "cuda" else 1 << 18

    def edge_topology(self, tri: torch.Tensor, device: torch.device) -> EdgeTopology:
        """The edge-to-triangles map of ``tri`` on ``device``, reused while ``tri`` is the same
        live, unmodified tensor (a renderer antialiases several images per mesh)."""
        cached = self._topology
        if cached is not None:
            ref, version, where, topology = cached
            if ref() is tri and tri._version == version and where == str(device):
                return topology
        topology = edge_topology(tri.to(device=device, dtype=torch.long))
        self._topology = (weakref.ref(tri), tri._version, str(device), topology)
        return topology

    def rasterize(
        self, pos_clip: torch.Tensor, tri: torch.Tensor, resolution: Sequence[int]
    ) -> torch.Tensor:
        pos = batched_positions(pos_clip)
        check_triangles(tri)
        height, width = check_resolution(resolution)
        if tri.shape[0] >= 1 << TRIANGLE_BITS:
            raise StudioError(f"Too many triangles ({tri.shape[0]}); at most 2**31 - 1.")
        tri = tri.to(device=pos.device, dtype=torch.long)
        with torch.no_grad():
            winner = visible_triangles(pos.detach(), tri, height, width, self._budget(pos.device))
        return rast_from_triangle_ids(pos, tri, winner, height, width)

    def interpolate(
        self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor
    ) -> torch.Tensor:
        attr = batched_attributes(attr)
        batch, height, width, _ = rast.shape
        if attr.shape[0] not in (1, batch):
            raise StudioError(
                f"Attributes for {attr.shape[0]} images cannot be interpolated over a raster of "
                f"{batch}; give one set per image or a single shared [V, C] set."
            )
        flat = rast.reshape(-1, 4)
        face = flat[:, 3].detach().round().long() - 1
        index = (face >= 0).nonzero().squeeze(1)
        face = face[index]
        image = torch.div(index, height * width, rounding_mode="floor")
        image = image if attr.shape[0] == batch else torch.zeros_like(image)
        corners = take_batched_rows(
            attr, image[:, None], tri.to(device=attr.device, dtype=torch.long)[face]
        )
        u, v = flat[index, 0], flat[index, 1]
        weights = torch.stack([u, v, 1.0 - u - v], dim=1).to(attr.dtype)
        values = (weights[..., None] * corners).sum(dim=1)
        out = attr.new_zeros(batch * height * width, attr.shape[-1])
        return torch.index_put(out, (index,), values).reshape(batch, height, width, -1)

    def antialias(
        self,
        color: torch.Tensor,
        rast: torch.Tensor,
        pos_clip: torch.Tensor,
        tri: torch.Tensor,
    ) -> torch.Tensor:
        """Analytic silhouette antialiasing (:mod:`studio.rasterize.antialias`)."""
        pos = batched_positions(pos_clip)
        check_triangles(tri)
        if color.dim() == 4 and color.shape[0] != rast.shape[0]:
            raise StudioError(
                f"antialias: {color.shape[0]} images for a raster of {rast.shape[0]}; antialias "
                f"the images rendered from this raster."
            )
        return antialias(
            color,
            rast,
            pos,
            tri,
            topology=self.edge_topology(tri, color.device),
            max_pairs=self._pair_budget(color.device),
        )

    def texture(
        self,
        tex: torch.Tensor,
        uv: torch.Tensor,
        filter_mode: str = "linear",
        boundary_mode: str = "wrap",
    ) -> torch.Tensor:
        """Bilinear or nearest texture samples (:mod:`studio.rasterize.texture`)."""
        return sample_texture(tex, uv, filter_mode, boundary_mode)
