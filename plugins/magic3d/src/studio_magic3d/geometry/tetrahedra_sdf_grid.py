"""``tetrahedra-sdf-grid``: DMTet, a signed distance (and an offset) per vertex of a tetrahedral grid.

The grid is core's Kuhn grid of ``[0, 1]^3`` (``tet_grid(resolution)``), mapped onto the box
``isosurface_bbox``. Each vertex holds a signed distance ``sdf`` (negative inside, positive
outside: exactly the *level* core's marching tetrahedra take) and, when the grid is deformable, an
unbounded offset ``deformation`` that moves it by ``tanh(deformation) / resolution`` cells of the
unit grid. The surface is the zero set of ``sdf`` on the (deformed) grid; it is extracted anew
every call, so losses on the mesh reach both per-vertex tensors. Surface colours come from a
hash-grid encoding and an MLP evaluated at world positions normalised by the geometry's
``[-radius, radius]^3`` box (the reference's ``bbox``), so a texture inherited from an implicit
volume of the same radius gives the same colours at the same points.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Union

import attrs
import torch
from torch import nn

from studio.api import (
    BaseExplicitGeometry,
    BaseImplicitGeometry,
    ConfigError,
    Mesh,
    StudioError,
    contract_to_unit_cube,
    get_isosurface_helper,
    one_line,
    structure,
)
from studio_dreamfusion.networks import defaults
from studio_dreamfusion.networks.encodings import CONFIGS as ENCODING_CONFIGS
from studio_dreamfusion.networks.encodings import build_encoding
from studio_dreamfusion.networks.mlp import OTYPES as MLP_OTYPES
from studio_dreamfusion.networks.mlp import MLPConfig, build_mlp

logger = logging.getLogger(__name__)

#: The config class of each MLP ``otype`` (they share one set of keys).
MLP_CONFIGS: dict[str, type] = {name: MLPConfig for name in MLP_OTYPES}


# -- pure helpers ----------------------------------------------------------------------------


def unit_to_box(points: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """``[0, 1]^3`` onto ``box [2, 3]`` (lower and upper corner): ``lo + p (hi - lo)``."""
    return box[0] + points * (box[1] - box[0])


def dmtet_sdf(level: torch.Tensor, field_is_sdf: bool) -> torch.Tensor:
    """The grid SDF a source's level values (positive outside) become.

    A signed distance keeps its levels. A density's levels ``-(density - threshold)`` scale with
    the density (hundreds per cell in a trained NeRF), so they are clamped to ``[-1, 1]``, as the
    reference does: the sign (the topology) is exact, crossings far from the threshold move to
    about the edge midpoint.
    """
    return level if field_is_sdf else level.clamp(-1.0, 1.0)


def canonical_network_config(config: Any, kinds: dict[str, type], path: str) -> Any:
    """``config`` (an encoding or MLP mapping) structured strictly by the class its ``otype``
    names in ``kinds`` (matched case-insensitively, as tiny-cuda-nn does), with the canonical
    ``otype`` and ``backend="auto"``: two configs describe the same network exactly when their
    canonical forms are equal (the backends keep interchangeable state dicts).

    Raises :class:`ConfigError` naming ``path`` for a non-mapping, an unknown ``otype`` or an
    unknown or mistyped key. Value ranges are checked when the network is built."""
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must be a mapping with an 'otype', got {config!r}.")
    names = {name.lower(): name for name in kinds}
    otype = names.get(str(config.get("otype")).lower())
    if otype is None:
        raise ConfigError(
            f"{path}.otype={config.get('otype')!r} is not a known type; choose one of "
            f"{', '.join(kinds)}."
        )
    structured = structure(config, kinds[otype], path)
    return attrs.evolve(structured, otype=otype, backend="auto")


def surface_on_grid(source: BaseImplicitGeometry, resolution: int) -> Mesh:
    """``source.isosurface()`` by marching tetrahedra on the Kuhn grid of ``resolution``.

    Everything else is the source's own choice: its threshold (``auto`` included, resolved as its
    ``isosurface()`` resolves it), coarse-to-fine box and deformation field. Outlier removal is
    off (the grid's levels matter here, not the mesh). The source's config is swapped for an
    evolved copy while extracting and restored afterwards. ``extras`` hold ``bbox`` (the box of
    the final pass), ``grid_level`` and ``grid_deformation``."""
    original = source.cfg
    if original.isosurface_method != "mt" or original.isosurface_resolution != resolution:
        logger.info(
            "conversion: extracting the source's surface by marching tetrahedra at resolution "
            "%d (its config says %s at %d)",
            resolution,
            original.isosurface_method,
            original.isosurface_resolution,
        )
    source.cfg = attrs.evolve(
        original,
        isosurface=True,
        isosurface_method="mt",
        isosurface_resolution=resolution,
        isosurface_remove_outliers=False,
    )
    try:
        return source.isosurface()
    finally:
        source.cfg = original


# -- the geometry ----------------------------------------------------------------------------


class TetrahedraSDFGrid(BaseExplicitGeometry):
    """DMTet: per-vertex ``sdf [N_v, 1]`` and ``deformation [N_v, 3]`` on the Kuhn grid.

    Resolution: the reference loads Quartet grids with about ``(res/2 + 1)^3`` vertices (5034
    at 32, 36562 at 64, so about 2.75e5 at its default 128). The Kuhn grid of resolution ``r``
    has exactly ``(r + 1)^3`` vertices (274625 at 64), so ``isosurface_resolution: 64`` here has
    about as many vertices as the reference's 128, and ``r`` here matches ``2 r`` there.

    Contracts:

    * ``isosurface()`` -- the world-space mesh of ``sdf = 0``: vertices in ``isosurface_bbox``,
      differentiable in ``sdf`` and ``deformation`` when they are parameters and grad is on.
      Extras as core's marching tetrahedra give them (``grid_vertices`` in ``[0, 1]^3``,
      ``tet_edges``, ``grid_level``, ``grid_deformation``) plus ``bbox``. With ``fix_geometry``
      the mesh is computed once and reused until the grid's tensors change (loading a state dict
      or any in-place edit, seen through their version counters) or move to another device.
      Raises :class:`StudioError` when the surface is empty (e.g. a fresh grid, all zeros).
    * ``forward(points)`` -- ``{"features": [..., n_feature_dims]}`` at world points
      (``{}`` with ``geometry_only``), encoded at their position in ``[-radius, radius]^3`` (the
      fixed ``bbox``, as the reference; not ``isosurface_bbox``, which changes on conversion), so
      an inherited texture keeps its colours. Normals come from the mesh.
    * ``create_from(other)`` -- from another grid of the same resolution (state copied) or from
      any implicit geometry (its surface extracted on this grid), see :meth:`create_from`.
    """

    @attrs.define(kw_only=True)
    class Config(BaseExplicitGeometry.Config):
        isosurface_resolution: int = 64
        """Cells per side of the Kuhn tetrahedral grid (64 here has about as many vertices as the reference's 128)."""
        isosurface_deformable_grid: bool = True
        """Learn a per-vertex offset of at most one cell (``tanh(deformation) / resolution``)."""
        isosurface_remove_outliers: bool = False
        """Drop small connected components from meshes that need no gradient."""
        # int before float: the strict converter keeps a YAML integer an absolute face count.
        isosurface_outlier_n_faces_threshold: Union[int, float] = 0.01
        """Components with fewer faces are dropped: a float is a fraction of the largest component's face count, an int a count."""
        n_input_dims: int = 3
        """Dimensions of the positions fed to the encoding (the grid is 3D, so 3)."""
        n_feature_dims: int = 3
        """Feature channels returned per surface point (the material's input)."""
        pos_encoding_config: dict[str, Any] = attrs.Factory(defaults.hash_grid)
        """Positional encoding of the feature field (tiny-cuda-nn keys; the reference's hash grid)."""
        mlp_network_config: dict[str, Any] = attrs.Factory(
            lambda: defaults.mlp("VanillaMLP", 64, 1)
        )
        """MLP from the encoding to the features (tiny-cuda-nn keys)."""
        geometry_only: bool = False
        """Build no feature field: ``forward`` returns no features (a shape-only stage)."""
        fix_geometry: bool = False
        """Keep ``sdf`` and ``deformation`` as buffers (not trained) and reuse the extracted mesh."""

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        """Ranges, and the encoding/MLP sub-configs' types and keys (unless ``geometry_only``)."""
        super().validate_config(cfg, path)
        if cfg.isosurface_resolution < 1:
            raise ConfigError(
                f"{path}.isosurface_resolution={cfg.isosurface_resolution} must be a positive "
                "number of grid cells per side; 64 has about as many vertices as the "
                "reference's 128."
            )
        if cfg.n_input_dims != 3:
            raise ConfigError(
                f"{path}.n_input_dims={cfg.n_input_dims}: the tetrahedral grid is 3D, so its "
                "feature field takes 3D positions; set it to 3."
            )
        if cfg.isosurface_outlier_n_faces_threshold < 0:
            raise ConfigError(
                f"{path}.isosurface_outlier_n_faces_threshold="
                f"{cfg.isosurface_outlier_n_faces_threshold} must not be negative: a fraction "
                "of the largest component's face count (a float) or a face count (an integer)."
            )
        if cfg.geometry_only:
            return
        if cfg.n_feature_dims < 1:
            raise ConfigError(
                f"{path}.n_feature_dims={cfg.n_feature_dims} must be at least 1; for a grid "
                f"without features set {path}.geometry_only=true."
            )
        canonical_network_config(
            cfg.pos_encoding_config, ENCODING_CONFIGS, f"{path}.pos_encoding_config"
        )
        canonical_network_config(cfg.mlp_network_config, MLP_CONFIGS, f"{path}.mlp_network_config")

    def configure(self) -> None:
        super().configure()
        cfg = self.cfg
        path = self.config_path
        self.validate_config(cfg, path)
        self.register_buffer("isosurface_bbox", self.bbox.clone())
        n = self.n_grid_vertices
        sdf = torch.zeros(n, 1)
        deformation = torch.zeros(n, 3) if cfg.isosurface_deformable_grid else None
        if cfg.fix_geometry:
            self.register_buffer("sdf", sdf)
            self.register_buffer("deformation", deformation)
        else:
            self.register_parameter("sdf", nn.Parameter(sdf))
            self.register_parameter(
                "deformation", nn.Parameter(deformation) if deformation is not None else None
            )
        if cfg.geometry_only:
            self.encoding: Optional[nn.Module] = None
            self.feature_network: Optional[nn.Module] = None
        else:
            self.encoding = build_encoding(
                cfg.n_input_dims, cfg.pos_encoding_config, f"{path}.pos_encoding_config"
            )
            self.feature_network = build_mlp(
                self.encoding.n_output_dims,
                cfg.n_feature_dims,
                cfg.mlp_network_config,
                f"{path}.mlp_network_config",
            )
        self._cached_mesh: Optional[Mesh] = None
        self._cached_key: Optional[tuple[Any, ...]] = None
        self.register_load_state_dict_post_hook(_forget_cached_mesh)

    # -- the grid ------------------------------------------------------------------------------

    @property
    def n_grid_vertices(self) -> int:
        """``(isosurface_resolution + 1)^3``: the rows of ``sdf`` and ``deformation``."""
        return (self.cfg.isosurface_resolution + 1) ** 3

    def _helper(self) -> Any:
        return get_isosurface_helper("mt", self.cfg.isosurface_resolution).to(self.sdf.device)

    def grid_points(self) -> torch.Tensor:
        """World positions ``[N_v, 3]`` of the undeformed grid vertices, in ``sdf``'s row order."""
        return unit_to_box(self._helper().grid_vertices, self.isosurface_bbox)

    # -- the surface ---------------------------------------------------------------------------

    def isosurface(self) -> Mesh:
        """The surface ``sdf = 0`` as a world-space mesh (see the class docstring)."""
        if not self.cfg.fix_geometry:
            return self._extract()
        key = self._geometry_key()
        if self._cached_mesh is None or self._cached_key != key:
            with torch.no_grad():
                self._cached_mesh = self._extract()
            self._cached_key = key
        return self._cached_mesh

    def _geometry_key(self) -> tuple[Any, ...]:
        """Identifies the current contents of the tensors the mesh is made from."""
        tensors = (self.sdf, self.deformation, self.isosurface_bbox)
        return tuple((t.device, t.data_ptr(), t._version) for t in tensors if t is not None)

    def _extract(self) -> Mesh:
        cfg = self.cfg
        deformation = self.deformation if cfg.isosurface_deformable_grid else None
        unit = self._helper()(self.sdf, deformation)
        if unit.n_faces == 0:
            raise self._empty_surface_error()
        box = self.isosurface_bbox
        mesh = Mesh(unit_to_box(unit.v_pos, box), unit.t_pos_idx, **unit.extras, bbox=box)
        if cfg.isosurface_remove_outliers and not mesh.requires_grad:
            mesh = mesh.remove_outlier(cfg.isosurface_outlier_n_faces_threshold)
        return mesh

    def _empty_surface_error(self) -> StudioError:
        lo, hi = float(self.sdf.detach().min()), float(self.sdf.detach().max())
        path = self.config_path
        return StudioError(
            f"{path}: the tetrahedral grid's SDF never changes sign (its values run from {lo:g} "
            f"to {hi:g}), so its surface is empty. A fresh grid is all zeros: start it from a "
            f"coarse stage ({_sibling_key(path, 'geometry_convert_from')}) or load trained "
            f"weights ({path}.weights)."
        )

    # -- features --------------------------------------------------------------------------

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        """``{"features": [..., n_feature_dims]}`` at world ``points [..., 3]`` (``{}`` when
        ``geometry_only``). The grid has no normals: ``output_normal=True`` is a ValueError."""
        if output_normal:
            raise ValueError(
                "TetrahedraSDFGrid has no normal field; take normals from its mesh "
                "(isosurface().v_nrm)."
            )
        if self.encoding is None or self.feature_network is None:
            return {}
        cfg = self.cfg
        unit = contract_to_unit_cube(points, cfg.radius).clamp(0.0, 1.0)
        encoded = self.encoding(unit.reshape(-1, cfg.n_input_dims))
        features = self.feature_network(encoded)
        return {"features": features.reshape(*points.shape[:-1], cfg.n_feature_dims)}

    def export(self, points: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
        """What the exporter bakes: the features at ``points`` (``{}`` when ``geometry_only``)."""
        return self.forward(points)

    # -- conversion ----------------------------------------------------------------------------

    @classmethod
    def create_from(
        cls,
        other: Any,
        cfg: Any = None,
        *,
        copy_net: bool = False,
        config_path: Optional[str] = None,
        **kwargs: Any,
    ) -> TetrahedraSDFGrid:
        """A grid configured by ``cfg`` made from ``other``, on ``other``'s device.

        * another ``TetrahedraSDFGrid`` of the same resolution: ``isosurface_bbox`` and ``sdf``
          copied, ``deformation`` when both are deformable;
        * any ``BaseImplicitGeometry``: its surface extracted on this grid (:func:`surface_on_grid`),
          ``isosurface_bbox`` the extraction's final box, ``sdf`` its level values
          (:func:`dmtet_sdf`: clamped to ``[-1, 1]`` for densities), ``deformation`` its grid
          deformation when both deform.

        ``copy_net`` also copies the texture (``encoding`` and ``feature_network``) when neither
        side is ``geometry_only``; the two must describe the same networks and radius. Raises
        :class:`ConfigError` for a resolution or texture mismatch and for other classes."""
        if isinstance(other, TetrahedraSDFGrid):
            return cls._from_grid(other, cfg, copy_net, config_path, **kwargs)
        if isinstance(other, BaseImplicitGeometry):
            return cls._from_implicit(other, cfg, copy_net, config_path, **kwargs)
        return super().create_from(other, cfg, copy_net=copy_net, config_path=config_path, **kwargs)

    @classmethod
    def _from_grid(
        cls,
        other: TetrahedraSDFGrid,
        cfg: Any,
        copy_net: bool,
        config_path: Optional[str],
        **kwargs: Any,
    ) -> TetrahedraSDFGrid:
        grid = cls(cfg, config_path=config_path, **kwargs).to(other.isosurface_bbox.device)
        mine, theirs = grid.cfg.isosurface_resolution, other.cfg.isosurface_resolution
        if mine != theirs:
            raise ConfigError(
                f"{grid.config_path}.isosurface_resolution={mine}: a tetrahedra-sdf-grid is "
                f"converted vertex by vertex, but the source grid's resolution is {theirs}. Set "
                f"{grid.config_path}.isosurface_resolution={theirs}."
            )
        with torch.no_grad():
            grid.isosurface_bbox.copy_(other.isosurface_bbox)
            grid.sdf.copy_(other.sdf)
            if grid.deformation is not None and other.deformation is not None:
                grid.deformation.copy_(other.deformation)
        if copy_net and grid.feature_network is not None and other.feature_network is not None:
            grid._inherit_texture(other)
        return grid

    @classmethod
    def _from_implicit(
        cls,
        other: BaseImplicitGeometry,
        cfg: Any,
        copy_net: bool,
        config_path: Optional[str],
        **kwargs: Any,
    ) -> TetrahedraSDFGrid:
        grid = cls(cfg, config_path=config_path, **kwargs).to(other.bbox.device)
        with torch.no_grad():
            mesh = surface_on_grid(other, grid.cfg.isosurface_resolution)
            grid.isosurface_bbox.copy_(mesh.extras["bbox"])
            level = mesh.extras["grid_level"].reshape(-1, 1)
            grid.sdf.copy_(dmtet_sdf(level, other.field_is_sdf))
            source_deformation = mesh.extras.get("grid_deformation")
            if grid.deformation is not None and source_deformation is not None:
                grid.deformation.copy_(source_deformation.reshape(-1, 3))
        if copy_net and grid.feature_network is not None:
            grid._inherit_texture(other)
        return grid

    def _inherit_texture(self, other: Any) -> None:
        """Copy ``other``'s ``encoding`` and ``feature_network`` (ConfigError if they differ)."""
        path = self.config_path
        key = _sibling_key(path, "geometry_convert_inherit_texture")
        source = type(other).__name__
        encoding = getattr(other, "encoding", None)
        network = getattr(other, "feature_network", None)
        if not isinstance(encoding, nn.Module) or not isinstance(network, nn.Module):
            raise ConfigError(
                f"{key}=true, but the source geometry ({source}) has no encoding and feature "
                f"network to inherit. Set {key}=false."
            )
        mismatch = self._texture_mismatch(other)
        if mismatch is None:
            assert self.encoding is not None and self.feature_network is not None
            try:
                self.encoding.load_state_dict(encoding.state_dict())
                self.feature_network.load_state_dict(network.state_dict())
                return
            except RuntimeError as exc:
                mismatch = one_line(exc)
        theirs, mine = other.cfg, self.cfg
        raise ConfigError(
            f"{key}=true copies the source geometry's texture networks, but they do not fit "
            f"this geometry's ({mismatch}). Here {path}.radius={mine.radius}, "
            f"n_feature_dims={mine.n_feature_dims}, pos_encoding_config="
            f"{mine.pos_encoding_config}, mlp_network_config={mine.mlp_network_config}; the "
            f"source ({source}) has radius={getattr(theirs, 'radius', '?')}, n_feature_dims="
            f"{getattr(theirs, 'n_feature_dims', '?')}, pos_encoding_config="
            f"{getattr(theirs, 'pos_encoding_config', '?')}, mlp_network_config="
            f"{getattr(theirs, 'mlp_network_config', '?')}. Make {path}'s match the source's, "
            f"or set {key}=false."
        )

    def _texture_mismatch(self, other: Any) -> Optional[str]:
        """What makes ``other``'s texture differ from this one's (``None``: nothing found)."""
        mine, theirs = self.cfg, other.cfg
        if getattr(theirs, "radius", mine.radius) != mine.radius:
            return "the features are looked up in the [-radius, radius]^3 box"
        if getattr(theirs, "n_feature_dims", mine.n_feature_dims) != mine.n_feature_dims:
            return "different numbers of features"
        pairs = (
            ("pos_encoding_config", ENCODING_CONFIGS),
            ("mlp_network_config", MLP_CONFIGS),
        )
        for name, kinds in pairs:
            if not hasattr(theirs, name):
                continue
            source_path = f"the source's {name}"
            if canonical_network_config(
                getattr(theirs, name), kinds, source_path
            ) != canonical_network_config(getattr(mine, name), kinds, name):
                return f"different {name}"
        return None


def _sibling_key(path: str, name: str) -> str:
    """The key ``name`` beside the geometry's block: ``system.geometry`` -> ``system.<name>``."""
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    return f"{parent}.{name}" if parent else name


def _forget_cached_mesh(module: nn.Module, _incompatible_keys: Any) -> None:
    """``load_state_dict`` post-hook: the grid's tensors changed, so its cached mesh is stale."""
    module._cached_mesh = None
    module._cached_key = None
