"""Isosurface extraction: marching cubes (PyMCubes) and differentiable marching tetrahedra.

Conventions shared by every helper: the grid lives in ``[0, 1]^3``; a *level* value per grid vertex
is positive OUTSIDE the surface and the surface is its zero set; output faces are wound
counter-clockwise seen from outside (normals point to positive level).

:func:`extract_isosurface` turns a scalar field over a world-space box into a :class:`Mesh`
(threshold, coarse-to-fine box, chunked evaluation, outlier removal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal, Optional, Union

import numpy as np
import torch
from torch import nn

from studio.errors import ConfigError, StudioError
from studio.indexing import take_rows
from studio.mesh.mesh import Mesh
from studio.mesh.tets import lattice_vertices, tet_grid, tet_grid_edges

logger = logging.getLogger(__name__)

IsosurfaceMethod = Literal["mt", "mc-cpu"]
FieldFn = Callable[[torch.Tensor], torch.Tensor]
LevelFn = Callable[[torch.Tensor, float], torch.Tensor]


class IsosurfaceHelper(nn.Module):
    """Extracts the zero level set of per-grid-vertex ``level`` values as a mesh in ``[0, 1]^3``."""

    resolution: int

    @property
    def grid_vertices(self) -> torch.Tensor:
        """The grid's vertices ``[N, 3]`` in ``[0, 1]^3``; ``level`` is given in this order."""
        raise NotImplementedError

    def forward(
        self, level: torch.Tensor, deformation: Optional[torch.Tensor] = None
    ) -> Mesh:  # pragma: no cover - interface
        raise NotImplementedError


# -- marching cubes ----------------------------------------------------------------------------


class MarchingCubesHelper(IsosurfaceHelper):
    """PyMCubes on a ``resolution^3`` lattice of ``[0, 1]^3`` (points ``linspace(0, 1, res)``).

    Runs on the CPU, is not differentiable and takes no deformation; any resolution works.
    """

    def __init__(self, resolution: int):
        super().__init__()
        if resolution < 2:
            raise ValueError(f"marching cubes needs resolution >= 2, got {resolution}")
        self.resolution = resolution
        self.register_buffer("_grid_vertices", lattice_vertices(resolution - 1), persistent=False)

    @property
    def grid_vertices(self) -> torch.Tensor:
        return self._grid_vertices

    def forward(self, level: torch.Tensor, deformation: Optional[torch.Tensor] = None) -> Mesh:
        import mcubes

        if deformation is not None:
            raise ConfigError(
                "Marching cubes (isosurface_method='mc-cpu') cannot deform its grid; set "
                "isosurface_deformable_grid=false or use isosurface_method='mt'."
            )
        res = self.resolution
        volume = -level.detach().reshape(res, res, res).double().cpu().numpy()
        vertices, faces = mcubes.marching_cubes(volume, 0.0)
        # PyMCubes treats values above the iso-value as inside; with ``-level`` that gives
        # outward-facing winding already (checked by the sphere test), so faces stay as they are.
        v_pos = torch.from_numpy(vertices / (res - 1)).to(level.device, level.dtype)
        t_pos_idx = torch.from_numpy(faces.astype(np.int64)).to(level.device)
        return Mesh(v_pos, t_pos_idx)


# -- marching tetrahedra -----------------------------------------------------------------------

#: The six edges of a tetrahedron as pairs of local vertex ids; triangle tables index this list.
TET_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))

_REFERENCE_TET = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _edge_id(a: int, b: int) -> int:
    return TET_EDGES.index((min(a, b), max(a, b)))


def _orient(triangle: list[int], outside: list[int], inside: list[int]) -> list[int]:
    """``triangle`` (local edge ids) wound so its normal points from ``inside`` to ``outside``.

    Checked on the positively oriented reference tetrahedron with crossings at edge midpoints;
    winding relative to a tetrahedron is topological, so it holds for every positively oriented
    tetrahedron and every crossing position along the edges.
    """
    mid = [_REFERENCE_TET[list(TET_EDGES[e])].mean(axis=0) for e in triangle]
    normal = np.cross(mid[1] - mid[0], mid[2] - mid[0])
    direction = _REFERENCE_TET[outside].mean(axis=0) - _REFERENCE_TET[inside].mean(axis=0)
    return triangle if normal @ direction > 0 else [triangle[0], triangle[2], triangle[1]]


def build_triangle_table() -> tuple[torch.Tensor, torch.Tensor]:
    """``(table [16, 2, 3], counts [16])`` for marching tetrahedra.

    Case ``c`` has bit ``i`` set when tetrahedron vertex ``i`` is outside (level > 0). Each case
    lists up to two triangles as local edge ids (``-1`` padding): one triangle when one vertex is
    separated from the other three, a quad split into two triangles when two and two.
    """
    table = torch.full((16, 2, 3), -1, dtype=torch.long)
    counts = torch.zeros(16, dtype=torch.long)
    for case in range(16):
        outside = [i for i in range(4) if case >> i & 1]
        inside = [i for i in range(4) if not case >> i & 1]
        if len(outside) in (0, 4):
            continue
        if len(outside) == 2:
            (a, b), (c, d) = inside, outside
            quad = [_edge_id(a, c), _edge_id(a, d), _edge_id(b, d), _edge_id(b, c)]
            triangles = [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
        else:
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            triangles = [[_edge_id(lone, o) for o in others]]
        for t, tri in enumerate(triangles):
            table[case, t] = torch.tensor(_orient(tri, outside, inside))
        counts[case] = len(triangles)
    return table, counts


_TRIANGLE_TABLE, _TRIANGLE_COUNTS = build_triangle_table()


def marching_tetrahedra(
    vertices: torch.Tensor, level: torch.Tensor, tets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero level set of ``level [N]`` on the tetrahedra ``tets [T, 4]`` over ``vertices [N, 3]``.

    Returns ``(v_pos [V, 3], t_pos_idx [F, 3])``. One output vertex per grid edge whose endpoints
    lie on different sides (so adjacent tetrahedra share vertices), placed by linear interpolation
    ``p = (p_a l_b - p_b l_a) / (l_b - l_a)``; differentiable in ``vertices`` and ``level``.
    Tetrahedra must be positively oriented for outward winding.
    """
    device = vertices.device
    outside = level > 0
    with torch.no_grad():
        n_outside = outside[tets].sum(dim=1)
        crossing_tets = tets[(n_outside > 0) & (n_outside < 4)]
        if len(crossing_tets) == 0:
            return vertices.new_zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long, device=device)
        local = torch.tensor(TET_EDGES, device=device)
        pairs = crossing_tets[:, local].reshape(-1, 2).sort(dim=1).values  # [6 T', 2]
        n = len(vertices)
        keys, tet_edge_to_unique = torch.unique(pairs[:, 0] * n + pairs[:, 1], return_inverse=True)
        edges = torch.stack([keys // n, keys % n], dim=-1)
        edge_crosses = outside[edges[:, 0]] != outside[edges[:, 1]]
        vertex_of_edge = torch.cumsum(edge_crosses.long(), 0) - 1
        edges = edges[edge_crosses]
        tet_vertex = vertex_of_edge[tet_edge_to_unique].reshape(-1, 6)

        codes = (outside[crossing_tets].long() << torch.arange(4, device=device)).sum(dim=1)
        table = _TRIANGLE_TABLE.to(device)[codes]  # [T', 2, 3] local edge ids, -1 padded
        counts = _TRIANGLE_COUNTS.to(device)[codes]
        first = torch.gather(tet_vertex, 1, table[:, 0])
        two = counts == 2
        second = torch.gather(tet_vertex[two], 1, table[two, 1])
        faces = torch.cat([first, second])

    p_a, p_b = take_rows(vertices, edges).unbind(dim=1)
    l_a, l_b = take_rows(level.reshape(-1, 1), edges).unbind(dim=1)
    v_pos = (p_a * l_b - p_b * l_a) / (l_b - l_a)
    return v_pos, faces


class MarchingTetrahedraHelper(IsosurfaceHelper):
    """Differentiable marching tetrahedra on the Kuhn grid ``tet_grid(resolution)``.

    ``forward(level, deformation)`` moves the grid to ``grid + tanh(deformation) / resolution``
    (at most one cell) when a deformation is given. The mesh's vertices are differentiable in
    ``level`` and ``deformation``; extras: ``grid_vertices`` (the possibly deformed grid),
    ``tet_edges`` (all unique grid edges), ``grid_level``, ``grid_deformation``.
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = resolution
        vertices, tets = tet_grid(resolution)
        self.register_buffer("_grid_vertices", vertices, persistent=False)
        self.register_buffer("tets", tets, persistent=False)
        self.register_buffer("_tet_edges", torch.empty(0, 2, dtype=torch.long), persistent=False)

    @property
    def grid_vertices(self) -> torch.Tensor:
        return self._grid_vertices

    @property
    def tet_edges(self) -> torch.Tensor:
        """Unique edges of the whole grid ``[E, 2]`` (computed on first use)."""
        if self._tet_edges.numel() == 0:
            self._tet_edges = tet_grid_edges(self.resolution).to(self._grid_vertices.device)
        return self._tet_edges

    def deform(self, deformation: torch.Tensor) -> torch.Tensor:
        """Grid vertices moved by ``tanh(deformation) / resolution``."""
        grid = self.grid_vertices.to(deformation.dtype)
        return grid + torch.tanh(deformation) / self.resolution

    def forward(self, level: torch.Tensor, deformation: Optional[torch.Tensor] = None) -> Mesh:
        n = len(self.grid_vertices)
        if level.shape not in ((n,), (n, 1)):
            raise ValueError(f"level must have shape [{n}, 1] for this grid, got {level.shape}")
        if deformation is not None:
            grid = self.deform(deformation.reshape(n, 3))
        else:
            grid = self.grid_vertices.to(level.dtype)
        v_pos, t_pos_idx = marching_tetrahedra(grid, level.reshape(-1), self.tets)
        return Mesh(
            v_pos,
            t_pos_idx,
            grid_vertices=grid,
            tet_edges=self.tet_edges,
            grid_level=level,
            grid_deformation=deformation,
        )


# -- extraction from a field -------------------------------------------------------------------

_HELPERS: dict[tuple[str, int], IsosurfaceHelper] = {}


def get_helper(method: IsosurfaceMethod, resolution: int) -> IsosurfaceHelper:
    """The (cached) helper for ``method`` at ``resolution``."""
    key = (method, resolution)
    if key not in _HELPERS:
        if method == "mt":
            _HELPERS[key] = MarchingTetrahedraHelper(resolution)
        elif method == "mc-cpu":
            _HELPERS[key] = MarchingCubesHelper(resolution)
        else:
            raise ConfigError(
                f"Unknown isosurface method {method!r}; use 'mt' (marching tetrahedra) or "
                f"'mc-cpu' (marching cubes)."
            )
    return _HELPERS[key]


def mean_field_threshold(field_values: torch.Tensor) -> float:
    """The simple automatic threshold: mean of the field values above ``1e-5``."""
    positive = field_values[field_values > 1e-5]
    if positive.numel() == 0:
        return 0.0
    return float(positive.float().mean())


def evaluate_chunked(fn: FieldFn, points: torch.Tensor, chunk: int) -> torch.Tensor:
    """``fn(points)`` computed ``chunk`` points at a time (``chunk <= 0``: all at once)."""
    if chunk <= 0 or chunk >= len(points):
        return fn(points)
    return torch.cat([fn(part) for part in points.split(chunk)])


def _empty_surface_error(field: torch.Tensor, threshold: float) -> StudioError:
    lo, hi = float(field.min()), float(field.max())
    return StudioError(
        f"The isosurface at threshold {threshold:g} is empty: the field ranges from {lo:g} to "
        f"{hi:g} over the bounding box and never crosses the threshold, so there is no surface "
        f"to extract. Set system.geometry.isosurface_threshold to a value between {lo:g} and "
        f"{hi:g}, or to 'auto' to derive it from the field."
    )


def _tight_box(v_pos: torch.Tensor, bbox: torch.Tensor) -> torch.Tensor:
    """The vertices' bounding box grown by 10% of its extent per side, clamped to ``bbox``."""
    lo, hi = v_pos.amin(dim=0), v_pos.amax(dim=0)
    margin = 0.1 * (hi - lo)
    return torch.stack([torch.maximum(lo - margin, bbox[0]), torch.minimum(hi + margin, bbox[1])])


def extract_isosurface(
    field_fn: FieldFn,
    bbox: torch.Tensor,
    *,
    method: IsosurfaceMethod,
    resolution: int,
    threshold: Union[float, Literal["auto"]],
    level_fn: LevelFn,
    chunk: int = 0,
    coarse_to_fine: bool = True,
    remove_outliers: bool = True,
    outlier_threshold: Union[float, int] = 0.01,
    deformation_fn: Optional[FieldFn] = None,
) -> Mesh:
    """The surface ``level_fn(field_fn(x), threshold) = 0`` inside ``bbox [2, 3]`` (world space).

    ``field_fn`` maps world points ``[N, 3]`` to ``[N, 1]``; ``level_fn`` turns field values into
    level values (positive outside). ``threshold="auto"`` uses :func:`mean_field_threshold` of
    the first pass (the full box). With ``coarse_to_fine`` a first pass without gradients over
    ``bbox`` finds the surface's box (grown by 10% per side) and a second pass extracts inside it.
    The field (and ``deformation_fn``, ``mt`` only) is evaluated in chunks of ``chunk`` points
    (0: all at once). Vertices come back in world space; ``extras["bbox"]`` is the box of the
    final pass and ``extras["threshold"]`` the threshold used. Outlier components are removed
    (``Mesh.remove_outlier(outlier_threshold)``) when asked and the mesh needs no gradient.

    Raises :class:`~studio.errors.StudioError` when the field does not cross the threshold.
    """
    if deformation_fn is not None and method != "mt":
        raise ConfigError(
            "isosurface_deformable_grid=true needs isosurface_method='mt' (marching "
            f"tetrahedra); got {method!r}."
        )
    helper = get_helper(method, resolution).to(bbox.device)
    bbox = bbox.detach()

    def extract(box: torch.Tensor, thr: Union[float, str]) -> tuple[Mesh, float]:
        points = box[0] + helper.grid_vertices.to(box.dtype) * (box[1] - box[0])
        field = evaluate_chunked(field_fn, points, chunk)
        if thr == "auto":
            thr = mean_field_threshold(field)
            logger.info("isosurface: automatic threshold %.6g (mean of field values > 1e-5)", thr)
        level = level_fn(field, float(thr))
        deformation = (
            evaluate_chunked(deformation_fn, points, chunk) if deformation_fn is not None else None
        )
        mesh = helper(level, deformation)
        if mesh.n_faces == 0:
            raise _empty_surface_error(field.detach(), float(thr))
        mesh.v_pos = box[0] + mesh.v_pos * (box[1] - box[0])
        mesh.extras["bbox"] = box
        mesh.extras["threshold"] = float(thr)
        return mesh, float(thr)

    box = bbox
    if coarse_to_fine:
        with torch.no_grad():
            coarse, threshold = extract(bbox, threshold)
        box = _tight_box(coarse.v_pos, bbox)
    mesh, _ = extract(box, threshold)
    if remove_outliers and not mesh.requires_grad:
        mesh = mesh.remove_outlier(outlier_threshold)
    return mesh


__all__ = [
    "TET_EDGES",
    "IsosurfaceHelper",
    "MarchingCubesHelper",
    "MarchingTetrahedraHelper",
    "build_triangle_table",
    "extract_isosurface",
    "get_helper",
    "marching_tetrahedra",
    "mean_field_threshold",
]
