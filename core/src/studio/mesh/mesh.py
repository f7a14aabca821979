"""A triangle mesh of PyTorch tensors with lazily computed, cached attributes.

``Mesh(v_pos, t_pos_idx, **extras)`` holds vertex positions ``[V, 3]`` (float, possibly part of an
autograd graph) and faces ``[F, 3]`` (long, counter-clockwise seen from outside). ``extras`` is a
free dict for what produced the mesh (``bbox``, ``grid_level``, ``grid_vertices``, ``tet_edges``,
``grid_deformation``, ...). Normals, edges and UVs are computed on first use and cached; a mesh
is not meant to be mutated after construction.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from studio.errors import ConfigError
from studio.indexing import take_rows


def _unique_edges(faces: torch.Tensor, n_vertices: int) -> torch.Tensor:
    """Unique undirected edges ``[E, 2]`` of ``faces`` (lower index first, sorted)."""
    pairs = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    keys = torch.unique(pairs[:, 0] * n_vertices + pairs[:, 1])
    return torch.stack([keys // n_vertices, keys % n_vertices], dim=-1)


def uniform_laplacian(edges: torch.Tensor, n_vertices: int) -> torch.Tensor:
    """Sparse ``[V, V]`` uniform Laplacian: vertex degree on the diagonal, ``-1`` per neighbour."""
    device = edges.device
    both = torch.cat([edges, edges.flip(1)])
    degree = torch.zeros(n_vertices, device=device).index_add_(
        0, both[:, 0], torch.ones(len(both), device=device)
    )
    diagonal = torch.arange(n_vertices, device=device)
    indices = torch.cat([both.t(), torch.stack([diagonal, diagonal])], dim=1)
    values = torch.cat([-torch.ones(len(both), device=device), degree])
    return torch.sparse_coo_tensor(
        indices, values, (n_vertices, n_vertices), check_invariants=False
    ).coalesce()


def _set_options(target: Any, options: Optional[dict[str, Any]], kind: str) -> Any:
    """Set ``options`` on an xatlas options object by attribute name (unknown names: an error)."""
    valid = sorted(name for name in dir(target) if not name.startswith("_"))
    for name, value in (options or {}).items():
        if name not in valid:
            raise ConfigError(
                f"Unknown xatlas {kind} option {name!r}. Valid {kind} options: {', '.join(valid)}."
            )
        try:
            setattr(target, name, value)
        except (TypeError, AttributeError) as exc:
            raise ConfigError(
                f"xatlas {kind} option {name!r} cannot be set to {value!r} ({exc}); check its type."
            ) from None
    return target


class Mesh:
    """Triangle mesh: ``v_pos [V, 3]`` float, ``t_pos_idx [F, 3]`` long, plus ``extras``."""

    def __init__(self, v_pos: torch.Tensor, t_pos_idx: torch.Tensor, **extras: Any):
        self.v_pos = v_pos
        self.t_pos_idx = t_pos_idx.long()
        self.extras: dict[str, Any] = dict(extras)
        self._v_nrm: Optional[torch.Tensor] = None
        self._edges: Optional[torch.Tensor] = None
        self._v_tex: Optional[torch.Tensor] = None
        self._t_tex_idx: Optional[torch.Tensor] = None
        self._v_rgb: Optional[torch.Tensor] = None
        self._laplacian: Optional[torch.Tensor] = None

    # -- basic facts -------------------------------------------------------------------------

    @property
    def n_vertices(self) -> int:
        return int(self.v_pos.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.t_pos_idx.shape[0])

    @property
    def device(self) -> torch.device:
        return self.v_pos.device

    @property
    def requires_grad(self) -> bool:
        """Whether the vertex positions are part of an autograd graph."""
        return bool(self.v_pos.requires_grad)

    def __repr__(self) -> str:
        return f"Mesh(n_vertices={self.n_vertices}, n_faces={self.n_faces}, device={self.device})"

    # -- lazy attributes ---------------------------------------------------------------------

    @property
    def v_nrm(self) -> torch.Tensor:
        """Unit vertex normals ``[V, 3]``: area-weighted face normals summed per vertex.

        Differentiable in ``v_pos``; a vertex whose summed normal vanishes (isolated or
        degenerate) gets ``(0, 0, 1)``.
        """
        if self._v_nrm is None:
            self._v_nrm = self._compute_vertex_normals()
        return self._v_nrm

    def _compute_vertex_normals(self) -> torch.Tensor:
        v, f = self.v_pos, self.t_pos_idx
        v0, v1, v2 = take_rows(v, f).unbind(dim=1)
        face_normals = torch.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area
        summed = torch.zeros_like(v)
        for corner in range(3):
            summed = summed.index_add(0, f[:, corner], face_normals)
        length = summed.norm(dim=-1, keepdim=True)
        eps = torch.finfo(v.dtype).tiny ** 0.5
        fallback = torch.tensor([0.0, 0.0, 1.0], dtype=v.dtype, device=v.device).expand_as(v)
        return torch.where(length > eps, summed / length.clamp_min(eps), fallback)

    @property
    def edges(self) -> torch.Tensor:
        """Unique undirected edges ``[E, 2]`` long (lower vertex index first)."""
        if self._edges is None:
            self._edges = _unique_edges(self.t_pos_idx, max(self.n_vertices, 1))
        return self._edges

    @property
    def v_rgb(self) -> Optional[torch.Tensor]:
        """Per-vertex colours ``[V, 3]`` if set with :meth:`set_vertex_color`, else ``None``."""
        return self._v_rgb

    def set_vertex_color(self, v_rgb: torch.Tensor) -> None:
        if v_rgb.shape != self.v_pos.shape:
            raise ValueError(f"v_rgb must have shape {tuple(self.v_pos.shape)}, got {v_rgb.shape}")
        self._v_rgb = v_rgb

    @property
    def v_tex(self) -> torch.Tensor:
        """UV coordinates ``[Vt, 2]`` in ``[0, 1]`` (xatlas with default options on first use)."""
        if self._v_tex is None:
            self.unwrap_uv()
        return self._v_tex

    @property
    def t_tex_idx(self) -> torch.Tensor:
        """Per-face indices into :attr:`v_tex` ``[F, 3]`` long."""
        if self._t_tex_idx is None:
            self.unwrap_uv()
        return self._t_tex_idx

    def unwrap_uv(
        self,
        chart_options: Optional[dict[str, Any]] = None,
        pack_options: Optional[dict[str, Any]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute a UV atlas with xatlas; returns and caches ``(v_tex, t_tex_idx)``.

        ``chart_options`` / ``pack_options`` set attributes of ``xatlas.ChartOptions`` /
        ``xatlas.PackOptions`` by name (e.g. ``{"max_iterations": 4}``, ``{"padding": 2}``);
        an unknown name raises :class:`~studio.errors.ConfigError`.
        """
        import xatlas

        chart = _set_options(xatlas.ChartOptions(), chart_options, "chart")
        pack = _set_options(xatlas.PackOptions(), pack_options, "pack")
        atlas = xatlas.Atlas()
        atlas.add_mesh(
            self.v_pos.detach().cpu().numpy().astype(np.float32),
            self.t_pos_idx.cpu().numpy().astype(np.uint32),
        )
        atlas.generate(chart, pack)
        _vmapping, indices, uvs = atlas.get_mesh(0)
        self._v_tex = torch.from_numpy(uvs.astype(np.float32)).to(self.device)
        self._t_tex_idx = torch.from_numpy(indices.astype(np.int64)).to(self.device)
        return self._v_tex, self._t_tex_idx

    # -- regularisers ------------------------------------------------------------------------

    def normal_consistency(self) -> torch.Tensor:
        """Mean over unique edges of ``1 - cos(n_a, n_b)`` of the endpoints' vertex normals."""
        normals = self.v_nrm
        a, b = self.edges[:, 0], self.edges[:, 1]
        return (1.0 - (take_rows(normals, a) * take_rows(normals, b)).sum(dim=-1)).mean()

    def laplacian_matrix(self) -> torch.Tensor:
        """The (cached, constant) sparse uniform Laplacian of the mesh's edge graph."""
        if self._laplacian is None:
            self._laplacian = uniform_laplacian(self.edges, self.n_vertices).to(self.v_pos.dtype)
        return self._laplacian

    def laplacian(self) -> torch.Tensor:
        """Laplacian smoothness loss: mean over vertices of ``|L v|`` (uniform ``L``, no grad)."""
        lv = torch.sparse.mm(self.laplacian_matrix(), self.v_pos)
        return lv.norm(dim=-1).mean()

    # -- clean-up ----------------------------------------------------------------------------

    def remove_outlier(self, threshold: float | int) -> Mesh:
        """Drop connected components with fewer faces than ``threshold``; extras are kept.

        A float is a fraction of the largest component's face count, an int an absolute count.
        Components are those of ``trimesh``'s ``split(only_watertight=False)`` (faces joined by
        shared edges); vertex order is preserved and unused vertices are dropped. Returns
        ``self`` when nothing would be removed or everything would be.
        """
        import trimesh

        if self.n_faces == 0:
            return self
        faces = self.t_pos_idx.cpu().numpy()
        tm = trimesh.Trimesh(
            vertices=self.v_pos.detach().cpu().numpy(), faces=faces, process=False, validate=False
        )
        labels = trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(faces))
        counts = np.bincount(labels)
        if isinstance(threshold, float):
            min_faces = threshold * counts.max()
        else:
            min_faces = threshold
        keep_component = counts >= min_faces
        if keep_component.all() or not keep_component.any():
            return self
        keep_face = torch.from_numpy(keep_component[labels]).to(self.device)
        return self._submesh(keep_face)

    def _submesh(self, keep_face: torch.Tensor) -> Mesh:
        faces = self.t_pos_idx[keep_face]
        used = torch.zeros(self.n_vertices, dtype=torch.bool, device=self.device)
        used[faces.reshape(-1)] = True
        remap = torch.cumsum(used.long(), 0) - 1
        mesh = Mesh(self.v_pos[used], remap[faces], **self.extras)
        if self._v_rgb is not None:
            mesh.set_vertex_color(self._v_rgb[used])
        return mesh

    # -- conversion --------------------------------------------------------------------------

    def to(self, device: torch.device | str) -> Mesh:
        """A copy on ``device`` (tensors in ``extras`` move too; cached UVs are kept)."""
        extras = {
            k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.extras.items()
        }
        mesh = Mesh(self.v_pos.to(device), self.t_pos_idx.to(device), **extras)
        for name in ("_v_nrm", "_edges", "_v_tex", "_t_tex_idx", "_v_rgb"):
            value = getattr(self, name)
            if value is not None:
                setattr(mesh, name, value.to(device))
        return mesh

    def to_trimesh(self) -> Any:
        """A ``trimesh.Trimesh`` (unprocessed: same vertices and faces; colours if set)."""
        import trimesh

        colors = None
        if self._v_rgb is not None:
            rgb = self._v_rgb.detach().clamp(0.0, 1.0).cpu().numpy()
            colors = np.round(rgb * 255.0).astype(np.uint8)
        return trimesh.Trimesh(
            vertices=self.v_pos.detach().cpu().numpy(),
            faces=self.t_pos_idx.cpu().numpy(),
            vertex_colors=colors,
            process=False,
        )

    @classmethod
    def from_trimesh(cls, tm: Any, **extras: Any) -> Mesh:
        """A float32 mesh with the same vertices and faces as ``tm``."""
        v_pos = torch.as_tensor(np.asarray(tm.vertices), dtype=torch.float32)
        t_pos_idx = torch.as_tensor(np.asarray(tm.faces), dtype=torch.long)
        return cls(v_pos, t_pos_idx, **extras)


__all__ = ["Mesh", "uniform_laplacian"]
