"""A triangle mesh of PyTorch tensors with lazily computed, cached attributes.

``Mesh(v_pos, t_pos_idx, **extras)`` holds vertex positions ``[V, 3]`` (float, possibly part of an
autograd graph) and faces ``[F, 3]`` (long, counter-clockwise seen from outside). ``extras`` is a
free dict for what produced the mesh (``bbox``, ``grid_level``, ``grid_vertices``, ``tet_edges``,
``grid_deformation``, ...). Normals, edges, UVs and tangents are computed on first use and cached;
a mesh is not meant to be mutated after construction (UVs may be set once, before tangents are
asked for, with :meth:`Mesh.set_uv` or :meth:`Mesh.unwrap_uv`).

Tangent frame (shared with the PBR bump channel and the mesh exporter)
    ``t`` (:attr:`Mesh.v_tng`) is the surface direction of increasing ``u``; the bitangent is
    ``b = sign * (n x t)`` (:attr:`Mesh.v_tng_sign`) and points towards the *top of the texture
    image*, i.e. along increasing ``1 - v`` of :attr:`Mesh.v_tex` (the ``v`` of OBJ's ``vt`` and of
    OpenGL; ``v_tex`` itself has ``v = 0`` at the image's first row, see :mod:`studio.mesh.io`).
    A tangent-space normal ``(x, y, z)`` means ``x t + y b + z n``, the OpenGL normal-map
    convention glTF uses (+X right, +Y up in the image), so a map baked in this frame is written
    as it is and glTF's ``TANGENT`` is ``(t, sign)``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from studio.errors import ConfigError, StudioError
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


def _safe_norm(x: torch.Tensor, tiny: float) -> torch.Tensor:
    """``|x|`` over the last dimension, with a finite gradient at zero."""
    return (x * x).sum(-1).clamp_min(tiny).sqrt()


def _perpendicular(n: torch.Tensor, tiny: float) -> torch.Tensor:
    """A unit vector perpendicular to each unit ``n [V, 3]`` (x axis or, near it, y made
    orthogonal)."""
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=n.dtype, device=n.device).expand_as(n)
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=n.dtype, device=n.device).expand_as(n)
    a = torch.where(n[:, :1].abs() < 0.9, x_axis, y_axis)
    p = a - (a * n).sum(-1, keepdim=True) * n
    return p / _safe_norm(p, tiny)[:, None]


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
        self._v_tng: Optional[torch.Tensor] = None
        self._v_tng_sign: Optional[torch.Tensor] = None
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
        self._v_tng = self._v_tng_sign = None
        return self._v_tex, self._t_tex_idx

    @property
    def has_uv(self) -> bool:
        """Whether UVs are set (by :meth:`set_uv` or an earlier unwrap); never unwraps."""
        return self._v_tex is not None and self._t_tex_idx is not None

    def set_uv(self, v_tex: torch.Tensor, t_tex_idx: torch.Tensor) -> None:
        """Use a given UV atlas: ``v_tex [T, 2]`` (``v = 0`` at the texture's first row, as
        xatlas gives) and ``t_tex_idx [F, 3]`` (per-face indices into ``v_tex``)."""
        v_tex = torch.as_tensor(v_tex)
        t_tex_idx = torch.as_tensor(t_tex_idx).long()
        if v_tex.ndim != 2 or v_tex.shape[1] != 2 or not v_tex.is_floating_point():
            raise ValueError(f"v_tex must be a float tensor [T, 2]; got {list(v_tex.shape)}")
        if t_tex_idx.shape != self.t_pos_idx.shape:
            raise ValueError(
                f"t_tex_idx must have shape {list(self.t_pos_idx.shape)} (one UV index per face "
                f"corner); got {list(t_tex_idx.shape)}"
            )
        if t_tex_idx.numel() and (t_tex_idx.min() < 0 or t_tex_idx.max() >= len(v_tex)):
            raise ValueError(f"t_tex_idx must index 0..{len(v_tex) - 1} (the rows of v_tex)")
        self._v_tex = v_tex.to(self.device)
        self._t_tex_idx = t_tex_idx.to(self.device)
        self._v_tng = self._v_tng_sign = None

    @property
    def v_tng(self) -> torch.Tensor:
        """Unit vertex tangents ``[V, 3]`` (indexed like :attr:`v_pos`): the direction of
        increasing ``u`` of the UV atlas, orthogonal to :attr:`v_nrm`.

        Per face, ``dP/du`` solves the 2x2 system of the face's position and UV edges; its unit
        direction, weighted by the face's area, is summed at the face's three position vertices,
        then made orthogonal to the vertex normal (Gram-Schmidt) and normalised. Faces whose UV
        triangle is degenerate are skipped; a vertex left without a tangent gets a unit vector
        perpendicular to its normal. Where a vertex lies on a chart seam, the charts' directions
        are averaged: one tangent per position vertex, interpolated with :attr:`t_pos_idx`, so the
        frame is continuous across seams, as a bump field queried by 3D position needs (a viewer
        computing its own per-chart tangents, e.g. MikkTSpace for an OBJ, differs near seams).

        Needs UVs (:meth:`unwrap_uv` or :meth:`set_uv` first: the tangent frame must be the one
        of the atlas the textures live in, so it never unwraps by itself); raises
        :class:`~studio.errors.StudioError` otherwise. Differentiable in ``v_pos`` (the sign is
        piecewise constant); cached like :attr:`v_nrm`.
        """
        if self._v_tng is None:
            self._v_tng, self._v_tng_sign = self._compute_tangents()
        return self._v_tng

    @property
    def v_tng_sign(self) -> torch.Tensor:
        """Handedness ``[V, 1]``, exactly ``+1`` or ``-1`` (dtype of :attr:`v_pos`): ``+1`` when
        ``n x t`` points along increasing ``1 - v`` (towards the top of the texture image, OBJ's
        and OpenGL's ``v``), ``-1`` where the atlas is mirrored. Bitangent ``b = sign * (n x t)``;
        glTF's ``TANGENT`` is ``(v_tng, v_tng_sign)``."""
        if self._v_tng_sign is None:
            self._v_tng, self._v_tng_sign = self._compute_tangents()
        return self._v_tng_sign

    def _compute_tangents(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.has_uv:
            raise StudioError(
                "Mesh.v_tng needs the mesh's UV atlas, and this mesh has none: call "
                "mesh.unwrap_uv() (xatlas) or mesh.set_uv(v_tex, t_tex_idx) first, and bake or "
                "sample its textures in that same atlas."
            )
        v, f = self.v_pos, self.t_pos_idx
        tiny = torch.finfo(v.dtype).tiny
        uv = self._v_tex.to(device=v.device, dtype=v.dtype)
        p0, p1, p2 = take_rows(v, f).unbind(dim=1)
        q0, q1, q2 = take_rows(uv, self._t_tex_idx).unbind(dim=1)
        e1, e2 = p1 - p0, p2 - p0
        d1, d2 = q1 - q0, q2 - q0
        det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
        scale = (d1 * d1).sum(-1) + (d2 * d2).sum(-1)
        valid = (det.abs() > 1e-7 * scale) & (det != 0)
        inv = torch.where(valid, 1.0 / torch.where(valid, det, torch.ones_like(det)), 0.0)
        dp_du = (d2[:, 1:] * e1 - d1[:, 1:] * e2) * inv[:, None]
        dp_dv = (d1[:, :1] * e2 - d2[:, :1] * e1) * inv[:, None]
        area2 = _safe_norm(torch.cross(e1, e2, dim=-1), tiny)[:, None] * valid[:, None]
        face_t = dp_du / _safe_norm(dp_du, tiny)[:, None] * area2
        face_up = -dp_dv / _safe_norm(dp_dv, tiny)[:, None] * area2  # towards v = 0: image top
        summed_t, summed_up = torch.zeros_like(v), torch.zeros_like(v)
        weight = torch.zeros_like(v[:, 0])
        for corner in range(3):
            summed_t = summed_t.index_add(0, f[:, corner], face_t)
            summed_up = summed_up.index_add(0, f[:, corner], face_up)
            weight = weight.index_add(0, f[:, corner], area2[:, 0])
        n = self.v_nrm
        t = summed_t - (summed_t * n).sum(-1, keepdim=True) * n
        length = _safe_norm(t, tiny)
        ok = (weight > 0) & (length > 1e-6 * weight)
        t = torch.where(ok[:, None], t / length[:, None], _perpendicular(n, tiny))
        handed = (torch.cross(n, t, dim=-1) * summed_up).sum(-1, keepdim=True).detach()
        sign = torch.where(handed < 0, -1.0, 1.0).to(v.dtype)
        return t, sign

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
        """A copy on ``device`` (tensors in ``extras`` move too; cached UVs and tangents are
        kept)."""
        extras = {
            k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.extras.items()
        }
        mesh = Mesh(self.v_pos.to(device), self.t_pos_idx.to(device), **extras)
        for name in ("_v_nrm", "_edges", "_v_tex", "_t_tex_idx", "_v_rgb", "_v_tng", "_v_tng_sign"):
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
