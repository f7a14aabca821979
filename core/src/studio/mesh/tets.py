"""Tetrahedral grids of the unit cube, generated in code (no grid files are shipped).

``tet_grid(resolution)`` splits every cell of a ``(resolution + 1)^3`` vertex lattice of
``[0, 1]^3`` into the six tetrahedra of the Kuhn (Freudenthal) decomposition: for each ordering
``(a, b, c)`` of the axes the tetrahedron walks ``0 -> e_a -> e_a + e_b -> (1, 1, 1)`` across the
cell. Every cell is split the same way, so neighbouring cells split their shared square along the
same diagonal and the grid is conforming (each interior triangle belongs to exactly two
tetrahedra). All tetrahedra are positively oriented: ``det(v1 - v0, v2 - v0, v3 - v0) > 0``,
which is what the marching-tetrahedra triangle table relies on for outward winding.

Generating the 128 grid takes about 0.2 s on a laptop CPU, faster than reading it back from an
``.npz`` file (about 1 s), so grids are cached in memory only.
"""

from __future__ import annotations

import functools
import itertools

import torch

#: Bit ``i`` of a cell-corner id is the corner's offset along axis ``i`` (x = 1, y = 2, z = 4).
_CORNER_BITS = torch.tensor([[(c >> axis) & 1 for axis in range(3)] for c in range(8)])


def _kuhn_cell_tets() -> torch.Tensor:
    """The six tetrahedra of one cell as corner ids ``[6, 4]``, positively oriented."""
    rows = []
    for a, b, _ in itertools.permutations(range(3)):
        tet = [0, 1 << a, (1 << a) | (1 << b), 7]
        p = _CORNER_BITS[tet].double()
        if torch.linalg.det(p[1:] - p[0]) < 0:
            tet[2], tet[3] = tet[3], tet[2]
        rows.append(tet)
    return torch.tensor(rows)


def _lattice_index_offsets(resolution: int, corners: torch.Tensor) -> torch.Tensor:
    """Vertex-index offsets of cell corners (``[..., 3]`` bits) in the ``ij``-ordered lattice."""
    n = resolution + 1
    return corners @ torch.tensor([n * n, n, 1])


def _cell_origins(resolution: int) -> torch.Tensor:
    """Vertex index of the lowest corner of every cell ``[resolution^3]``."""
    n = resolution + 1
    i = torch.arange(resolution)
    return (i[:, None, None] * (n * n) + i[None, :, None] * n + i[None, None, :]).reshape(-1)


def _check_resolution(resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"tet grid resolution must be a positive integer, got {resolution!r}")


def lattice_vertices(resolution: int) -> torch.Tensor:
    """The ``(resolution + 1)^3`` lattice points of ``[0, 1]^3`` ``[N, 3]`` float32.

    Ordered like ``meshgrid(x, y, z, indexing="ij")``: index ``(i * n + j) * n + k`` is
    ``(x_i, y_j, z_k)`` with ``n = resolution + 1``.
    """
    lin = torch.linspace(0.0, 1.0, resolution + 1)
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3)


@functools.lru_cache(maxsize=4)
def tet_grid(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vertices [N, 3] float32 in [0, 1], tets [T, 4] long)`` of the Kuhn grid.

    ``N = (resolution + 1)^3``, ``T = 6 resolution^3``; the cell size is ``1 / resolution``. The
    tensors are cached and shared between callers: treat them as read-only.
    """
    _check_resolution(resolution)
    local = _lattice_index_offsets(resolution, _CORNER_BITS[_kuhn_cell_tets()])  # [6, 4]
    tets = (_cell_origins(resolution)[:, None, None] + local[None]).reshape(-1, 4)
    return lattice_vertices(resolution), tets


@functools.lru_cache(maxsize=4)
def tet_grid_edges(resolution: int) -> torch.Tensor:
    """The unique edges of ``tet_grid(resolution)`` ``[E, 2]`` long, lower index first.

    The Kuhn grid's edges go from each lattice point along the seven directions with
    non-negative offsets (3 axes, 3 face diagonals, the body diagonal), so they are listed
    directly instead of de-duplicating the ``6 T`` tetrahedron edges.
    """
    _check_resolution(resolution)
    n = resolution + 1
    edges = []
    lattice = torch.arange(n**3).reshape(n, n, n)
    for corner in range(1, 8):
        dx, dy, dz = (int(v) for v in _CORNER_BITS[corner])
        start = lattice[: n - dx, : n - dy, : n - dz].reshape(-1)
        offset = int(_lattice_index_offsets(resolution, _CORNER_BITS[corner]))
        edges.append(torch.stack([start, start + offset], dim=-1))
    return torch.cat(edges)
