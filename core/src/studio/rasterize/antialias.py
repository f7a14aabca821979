"""Analytic silhouette antialiasing in pure PyTorch (the scheme of nvdiffrast's ``antialias``).

The raster is point-sampled: a silhouette is a hard step in the image, and moving a vertex changes
the image only when a pixel centre changes triangle, so it has no gradient. ``antialias`` replaces
the step by the pixels' approximate box-filtered coverage, computed from where the silhouette edge
actually lies, which is continuous in (and differentiable w.r.t.) the vertex positions. For ``color [B, H, W, C]``, ``rast`` (only
``z/w`` and the triangle ids are read), clip-space ``pos [B or 1, V, 4]`` and ``tri [F, 3]``:

1. **Candidate pairs.** Every horizontally or vertically adjacent pixel pair whose triangle ids
   differ (the background, id 0, included).
2. **Occluder.** Of the two pixels, the one with the smaller ``z/w`` (the background is farthest;
   equal depths go to the lower triangle id). Its triangle ``T`` is the front triangle and its
   pixel centre ``F`` lies in ``T``; the other pixel centre is ``O``.
3. **Crossing edge.** With ``T``'s edge functions ``E_i`` (:mod:`studio.rasterize.edges`) signed to
   be >= 0 inside ``T``, the segment ``F -> O`` leaves ``T`` through the edge with the smallest
   ``t_i = E_i(F) / (E_i(F) - E_i(O))`` among those with ``E_i(O) < 0``. ``t`` is where it crosses
   the edge: 0 at ``F``, 1 at ``O``, the pixels' shared border at 0.5. If ``O`` lies in ``T`` too,
   no edge is crossed and the pair is left alone.
4. **Orientation.** A horizontal pair only takes an edge at least as steep as the diagonal in pixel
   units (``|a| H >= |b| W`` for ``E = a x + b y + c`` in NDC); a vertical pair only a flatter one.
   Each edge is so antialiased along one axis only, across its pixel rows or its pixel columns.
5. **Silhouette.** The edge is a silhouette edge of ``T`` unless another triangle with the same two
   vertex indices lies on the other side of the edge's screen-space line, i.e. continues the
   surface across it (decided exactly from the triangles' clip-space determinants and windings, see
   :func:`silhouette_half_edges`). So an edge of one triangle only is a silhouette, and so is a
   fold (the other triangle on ``T``'s side, behind it; on a closed, consistently wound mesh: a
   front-facing next to a back-facing triangle); a triangle soup whose triangles share no vertex
   indices has silhouettes at every edge. The edge-to-triangles map (:func:`edge_topology`,
   nvdiffrast's "topology hash") depends on ``tri`` only. Pairs whose front triangle has no
   silhouette edge in the view (most of them) are dropped before steps 3-4.
6. **Blend.** If ``t > 0.5`` the occluder covers ``t - 0.5`` of ``O``'s pixel:
   ``out[O] += (t - 0.5) (color[F] - color[O])``; if ``t < 0.5`` it leaves ``0.5 - t`` of ``F``'s
   pixel to what lies behind: ``out[F] += (0.5 - t) (color[O] - color[F])``. For a straight edge
   (at most 45 degrees from the pair's perpendicular, by step 4) this is the exact box-filtered
   coverage of the pixel row (column) as long as the edge stays inside the pixel. The increments of
   all pairs are added to the input image; every other pixel is returned unchanged.

Gradients: w.r.t. ``color`` through the blends, and w.r.t. ``pos`` through ``t``, computed in
float64 from the edge's two clip-space endpoints (the choices in steps 1-5 are not differentiated).
Pixel pairs (and triangles, for their orientations) are processed in chunks of at most
``max_pairs``, which bounds the memory of steps 2-5 (about 0.5 kB per pair) besides a few bytes per
pixel and per (image, triangle); the result does not depend on the chunk size.

Relation to nvdiffrast (whose documentation describes the scheme in prose only): steps 1-6 follow
its description (pairs with different ids, the nearer triangle's crossing edge, the orientation
rule, silhouettes from the edge-to-triangle map, blending by the crossing's distance from the
pixels' border); the arithmetic here is float64 and homogeneous (no vertex snapping, edges with a
vertex behind the camera handled exactly), the map is rebuilt from ``tri`` (or cached by the
caller) instead of taking a ``topology_hash``, and there is no ``pos_gradient_boost``. Like
nvdiffrast, it only sees silhouettes whose triangle covers a pixel centre next to them: with
triangles much thinner than a pixel at the silhouette, fewer pixels are blended.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.errors import StudioError
from studio.indexing import take_batched_rows
from studio.rasterize.edges import (
    AFTER_NEXT,
    NEXT,
    edge_coefficients,
    evaluate_edges,
    pixel_centres_ndc,
    segment_coefficients,
)


@dataclass(frozen=True)
class EdgeTopology:
    """Which triangles share an edge (same two vertex indices): nvdiffrast's "topology hash".

    Half-edge ``h = 3 f + i`` is the edge of triangle ``f`` opposite its vertex ``i``, running from
    vertex ``NEXT[i]`` to ``AFTER_NEXT[i]``. Every pair of distinct half-edges on one edge is listed
    (both ways round): ``half_edge[p]`` shares its edge with ``partner[p]``, which runs it in the
    same direction when ``same_direction[p]`` (inconsistently wound neighbours) and in the opposite
    one otherwise. A half-edge that is not listed is a boundary edge.
    """

    triangles: torch.Tensor  # [F, 3] int64
    half_edge: torch.Tensor  # [P] int64
    partner: torch.Tensor  # [P] int64
    same_direction: torch.Tensor  # [P] bool


def edge_topology(tri: torch.Tensor) -> EdgeTopology:
    """The :class:`EdgeTopology` of triangles ``tri [F, 3]`` (on ``tri``'s device)."""
    tri = tri.long()
    start = tri[:, list(NEXT)].reshape(-1)
    end = tri[:, list(AFTER_NEXT)].reshape(-1)
    n_vertices = int(tri.max()) + 1 if tri.numel() else 1
    key = torch.minimum(start, end) * n_vertices + torch.maximum(start, end)
    sorted_key, order = torch.sort(key, stable=True)
    _, inverse, counts = torch.unique_consecutive(
        sorted_key, return_inverse=True, return_counts=True
    )
    # for the half-edge at sorted position q: every other position of its run
    run_start = (counts.cumsum(0) - counts)[inverse]
    n_partners = counts[inverse] - 1
    owner = torch.repeat_interleave(torch.arange(order.numel(), device=tri.device), n_partners)
    within = torch.arange(owner.numel(), device=tri.device) - (
        n_partners.cumsum(0) - n_partners
    ).index_select(0, owner)
    position = run_start.index_select(0, owner) + within
    position = position + (position >= owner).long()  # skip the half-edge itself
    half_edge, partner = order[owner], order[position]
    return EdgeTopology(tri, half_edge, partner, start[half_edge] == start[partner])


def triangle_signs(pos: torch.Tensor, tri: torch.Tensor, chunk: int) -> torch.Tensor:
    """``sign(det)`` of the clip-space ``(X, Y, W)`` matrix of every triangle in every image:
    ``[B', F]`` (float64 ``pos [B', V, 4]``; +1 / -1 for the two windings on screen, 0 when
    degenerate; the same arithmetic as :func:`~studio.rasterize.edges.edge_coefficients`),
    computed ``chunk`` triangles at a time."""
    homogeneous = pos[..., [0, 1, 3]]
    signs = torch.empty(pos.shape[0], tri.shape[0], dtype=pos.dtype, device=pos.device)
    for start in range(0, tri.shape[0], chunk):
        corners = homogeneous[:, tri[start : start + chunk]]  # [B', n, 3, 3]
        opposite_0 = segment_coefficients(corners[..., 1, :], corners[..., 2, :])
        signs[:, start : start + chunk] = (corners[..., 0, :] * opposite_0).sum(-1).sign()
    return signs


def silhouette_half_edges(topology: EdgeTopology, signs: torch.Tensor) -> torch.Tensor:
    """``[B', 3F]`` bool: half-edge ``h`` is a silhouette edge of its triangle in image ``b``.

    It is one unless a triangle sharing it lies on the other side of its screen-space line. For
    triangle ``T`` and a neighbour ``N`` with third vertex ``P``, the side of ``P`` relative to
    ``T``'s edge ``(V_j, V_k)``, ``det[V_j; V_k; P]``, is ``-det(N)`` when ``N`` runs the edge the
    other way and ``+det(N)`` otherwise; ``N`` continues the surface across the edge exactly when
    that has the sign opposite to ``det(T)``. In homogeneous coordinates this is the side of the
    part of ``N`` next to the edge even when ``P`` is behind the camera.
    """
    batch, n_faces = signs.shape
    face = torch.div(topology.half_edge, 3, rounding_mode="floor")
    neighbour = torch.div(topology.partner, 3, rounding_mode="floor")
    direction = torch.where(topology.same_direction, 1, -1).to(torch.int8)
    silhouette = torch.ones(batch, 3 * n_faces, dtype=torch.bool, device=signs.device)
    for image, sign in enumerate(signs.to(torch.int8)):  # [F] each: a few bytes per half-edge
        continues = sign[face] * sign[neighbour] * direction < 0
        silhouette[image, topology.half_edge[continues]] = False
    return silhouette


def candidate_pairs(face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adjacent pixel pairs with different triangle ids in ``face [B, H, W]``: flat pixel indices
    ``(first, second)`` (``second`` is right of or below ``first``) and ``vertical`` flags."""
    batch, height, width = face.shape
    index = torch.arange(batch * height * width, device=face.device).reshape(batch, height, width)
    h_first = index[:, :, :-1][face[:, :, 1:] != face[:, :, :-1]]
    v_first = index[:, :-1, :][face[:, 1:, :] != face[:, :-1, :]]
    first = torch.cat([h_first, v_first])
    second = torch.cat([h_first + 1, v_first + width])
    vertical = torch.cat(
        [
            torch.zeros_like(h_first, dtype=torch.bool),
            torch.ones_like(v_first, dtype=torch.bool),
        ]
    )
    return first, second, vertical


def pixel_ndc(pixel: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 NDC centres of flat pixel indices ``pixel`` (over ``[B, H, W]``)."""
    within = pixel % (height * width)
    row = torch.div(within, width, rounding_mode="floor")
    return pixel_centres_ndc(within - row * width, row, height, width, torch.float64)


@dataclass(frozen=True)
class Silhouettes:
    """Per image (of ``pos``): triangle orientations and silhouette half-edges (step 5)."""

    signs: torch.Tensor  # [B', F] float64
    half_edges: torch.Tensor  # [B', 3F] bool
    faces: torch.Tensor  # [B', F] bool: the triangle has a silhouette edge


def select_blends(
    face: torch.Tensor,
    depth: torch.Tensor,
    pos: torch.Tensor,
    tri: torch.Tensor,
    silhouettes: Silhouettes,
    first: torch.Tensor,
    second: torch.Tensor,
    vertical: torch.Tensor,
    height: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 2-5 for candidate pairs: ``(front, other, image, half_edge)`` of the blended ones.

    ``face``/``depth`` are flat per-pixel triangle ids (-1: empty) and ``z/w``; ``pos`` is the
    detached float64 ``[B', V, 4]``; ``image`` indexes it. Not differentiable.
    """
    face_1, face_2 = face[first], face[second]
    depth_1, depth_2 = depth[first], depth[second]
    first_in_front = (face_1 >= 0) & (
        (face_2 < 0) | (depth_1 < depth_2) | ((depth_1 == depth_2) & (face_1 < face_2))
    )
    front = torch.where(first_in_front, first, second)
    other = torch.where(first_in_front, second, first)
    tri_face = face[front]
    image = torch.div(front, height * width, rounding_mode="floor")
    if pos.shape[0] == 1:
        image = torch.zeros_like(image)
    # only a triangle with a silhouette edge in this view can blend (most pairs are interior)
    keep = silhouettes.faces[image, tri_face].nonzero().squeeze(1)
    front, other, vertical, tri_face, image = (
        x[keep] for x in (front, other, vertical, tri_face, image)
    )
    sign = silhouettes.signs[image, tri_face]
    coeffs, _ = edge_coefficients(take_batched_rows(pos, image[:, None], tri[tri_face]))
    coeffs = coeffs * sign[:, None, None]
    e_front = evaluate_edges(coeffs, *pixel_ndc(front, height, width)).clamp(min=0.0)
    e_other = evaluate_edges(coeffs, *pixel_ndc(other, height, width))
    exits = e_other < 0
    t = torch.where(exits, e_front / torch.where(exits, e_front - e_other, 1.0), torch.inf)
    t, edge = t.min(dim=1)
    abc = coeffs[torch.arange(edge.numel(), device=edge.device), edge]
    steep = abc[:, 0].abs() * height >= abc[:, 1].abs() * width
    half_edge = tri_face * 3 + edge
    keep = (
        torch.isfinite(t)
        & (sign != 0)
        & (steep != vertical)
        & silhouettes.half_edges[image, half_edge]
    )
    keep = keep.nonzero().squeeze(1)
    return front[keep], other[keep], image[keep], half_edge[keep]


def blend_increments(
    color: torch.Tensor,
    pos: torch.Tensor,
    tri: torch.Tensor,
    front: torch.Tensor,
    other: torch.Tensor,
    image: torch.Tensor,
    half_edge: torch.Tensor,
    height: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 6: ``(target pixels [M], increments [M, C])``, differentiable w.r.t. ``color``
    (flat ``[B*H*W, C]``) and ``pos`` (``[B', V, 4]``)."""
    face = torch.div(half_edge, 3, rounding_mode="floor")
    corner = half_edge - 3 * face
    next_corner = torch.tensor(NEXT, device=corner.device)[corner]
    after_corner = torch.tensor(AFTER_NEXT, device=corner.device)[corner]
    homogeneous = pos[..., [0, 1, 3]]
    start = homogeneous[image, tri[face, next_corner]].double()
    end = homogeneous[image, tri[face, after_corner]].double()
    abc = segment_coefficients(start, end)
    x_front, y_front = pixel_ndc(front, height, width)
    x_other, y_other = pixel_ndc(other, height, width)
    e_front = abc[:, 0] * x_front + abc[:, 1] * y_front + abc[:, 2]
    e_other = abc[:, 0] * x_other + abc[:, 1] * y_other + abc[:, 2]
    t = (e_front / (e_front - e_other)).clamp(0.0, 1.0)
    beyond = t.detach() > 0.5
    target = torch.where(beyond, other, front)
    source = torch.where(beyond, front, other)
    weight = torch.where(beyond, t - 0.5, 0.5 - t).to(color.dtype)
    return target, weight[:, None] * (color[source] - color[target])


def antialias(
    color: torch.Tensor,
    rast: torch.Tensor,
    pos: torch.Tensor,
    tri: torch.Tensor,
    topology: EdgeTopology | None = None,
    max_pairs: int = 1 << 18,
) -> torch.Tensor:
    """``color [B, H, W, C]`` with silhouette edges antialiased (see the module docstring).

    ``pos`` is ``[B, V, 4]`` or ``[1, V, 4]`` (shared by all images); ``topology`` may be passed
    when ``tri`` is reused (it is built from ``tri`` otherwise). Returns ``color`` itself when no
    pixel pair straddles a silhouette edge.
    """
    if color.dim() != 4 or rast.dim() != 4 or rast.shape[-1] != 4:
        raise StudioError(
            f"antialias needs color [B, H, W, C] and rast [B, H, W, 4], got "
            f"{tuple(color.shape)} and {tuple(rast.shape)}; pass images in NHWC layout."
        )
    batch, height, width, channels = color.shape
    if tuple(rast.shape[:3]) != (batch, height, width):
        raise StudioError(
            f"antialias: color {tuple(color.shape)} and rast {tuple(rast.shape)} differ in "
            f"batch or resolution; antialias the image rendered from this raster."
        )
    if pos.shape[0] not in (1, batch):
        raise StudioError(
            f"antialias: {pos.shape[0]} sets of positions for {batch} images; pass the "
            f"positions used to rasterize (one set per image, or one shared [V, 4] set)."
        )
    device = color.device
    tri = tri.to(device=device, dtype=torch.long)
    pos = pos.to(device)
    if topology is None:
        topology = edge_topology(tri)
    face = rast[..., 3].detach().round().long().reshape(-1) - 1
    depth = rast[..., 2].detach().reshape(-1)
    first, second, vertical = candidate_pairs(face.reshape(batch, height, width))
    if first.numel() == 0:
        return color
    budget = max(1, int(max_pairs))
    flat = color.reshape(-1, channels)
    pos_64 = pos.detach().double()
    with torch.no_grad():
        signs = triangle_signs(pos_64, tri, budget)
        half_edges = silhouette_half_edges(topology, signs)
        with_silhouette = half_edges.reshape(*signs.shape, 3).any(-1)
        silhouettes = Silhouettes(signs, half_edges, with_silhouette)
    targets, increments = [], []
    for start in range(0, first.numel(), budget):
        chunk = slice(start, start + budget)
        with torch.no_grad():
            pairs = (first[chunk], second[chunk], vertical[chunk])
            front, other, image, half_edge = select_blends(
                face, depth, pos_64, tri, silhouettes, *pairs, height, width
            )
        if front.numel():
            target, increment = blend_increments(
                flat, pos, tri, front, other, image, half_edge, height, width
            )
            targets.append(target)
            increments.append(increment)
    if not targets:
        return color
    out = flat.index_add(0, torch.cat(targets), torch.cat(increments))
    return out.reshape(color.shape)
