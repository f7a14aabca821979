"""The geometry contracts: every geometry, implicit (NeRF/SDF fields) and explicit (meshes).

Points are world coordinates inside the bounding box ``[-radius, radius]^3``.

* :class:`BaseGeometry` -- any geometry; :meth:`BaseGeometry.create_from` builds one from another
  run's geometry (``system.geometry_convert_from``, :mod:`studio.geometry.convert`).
* :class:`BaseImplicitGeometry` -- returns per-point ``density`` (or ``sdf``), ``features`` and,
  when asked, ``normal``; ``forward_field`` returns the scalar field used for isosurface
  extraction and ``forward_level`` turns it into a level set that is positive outside the
  surface; ``isosurface`` extracts that surface as a mesh.
* :class:`BaseExplicitGeometry` -- holds a surface: ``isosurface()`` returns its mesh (with
  gradients to its parameters while training) and ``forward(points)`` the surface features.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import attrs
import torch

from studio.base import BaseModule
from studio.errors import ConfigError

if TYPE_CHECKING:
    from studio.mesh.mesh import Mesh

logger = logging.getLogger(__name__)


def contract_to_unit_cube(points: torch.Tensor, radius: float) -> torch.Tensor:
    """Map ``[-radius, radius]^3`` to ``[0, 1]^3`` (encodings take inputs in the unit cube)."""
    return (points + radius) / (2.0 * radius)


class BaseGeometry(BaseModule):
    """Any geometry. Subclasses say how they are created from another geometry."""

    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        radius: float = 1.0
        """Half the side of the bounding box ``[-radius, radius]^3`` the geometry lives in."""

    config_path = "system.geometry"

    def configure(self) -> None:
        r = self.cfg.radius
        self.register_buffer(
            "bbox", torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32), persistent=False
        )

    def isosurface(self) -> Mesh:
        """The geometry's surface as a world-space mesh."""
        raise NotImplementedError

    def export(self, points: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
        """What the exporter bakes at surface ``points``: ``{"features": [N, F]}`` by default."""
        return {"features": self.forward(points)["features"]}

    @classmethod
    def create_from(
        cls,
        other: BaseGeometry,
        cfg: Any = None,
        *,
        copy_net: bool = False,
        config_path: Optional[str] = None,
        **kwargs: Any,
    ) -> BaseGeometry:
        """A new geometry of this class, configured by ``cfg``, made from ``other`` (a trained
        geometry of a previous stage, already on its device, in eval mode).

        The default copies ``other``'s state when it is of this very class; subclasses that can
        convert other classes (an implicit field into a tetrahedral grid) override this.
        ``copy_net``: also take ``other``'s texture (feature) networks. Raises ``ConfigError``
        when ``other`` cannot be converted."""
        if type(other) is not cls:
            raise ConfigError(
                f"{config_path or cls.config_path}: a {cls.__name__} cannot be created from a "
                f"{type(other).__name__} (system.geometry_convert_from names a run whose geometry "
                f"is {type(other).__name__}). Convert from a run with a geometry this class "
                "accepts, or pick a geometry_type that converts from it."
            )
        geometry = cls(cfg, config_path=config_path, **kwargs).to(other.bbox.device)
        state = other.state_dict()
        if not copy_net:
            own = geometry.state_dict()
            state = {k: v for k, v in state.items() if k in own}
        geometry.load_state_dict(state, strict=True)
        return geometry


class BaseExplicitGeometry(BaseGeometry):
    """A geometry that holds its surface (a mesh, or a grid it turns into one every step)."""

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        """``{"features": [N, F]}`` at surface points (normals come from the mesh)."""
        raise NotImplementedError


class BaseImplicitGeometry(BaseGeometry):
    """Isosurface settings (``isosurface_*``) follow the reference: marching tetrahedra (``mt``)
    or PyMCubes (``mc-cpu``) at ``isosurface_resolution``; ``isosurface_threshold`` is a number
    or ``auto``; ``isosurface_outlier_n_faces_threshold`` is a fraction of the largest
    component's face count (a float) or an absolute face count (an integer).
    """

    @attrs.define(kw_only=True)
    class Config(BaseGeometry.Config):
        isosurface: bool = True
        """Whether a mesh can be extracted (false: rasterizing, export and conversion fail)."""
        isosurface_method: Literal["mt", "mc-cpu"] = "mt"
        """Extraction: ``mt`` (marching tetrahedra, differentiable) or ``mc-cpu`` (PyMCubes)."""
        isosurface_resolution: int = 128
        """Extraction grid per axis: cells for ``mt``, sample points for ``mc-cpu``."""
        isosurface_threshold: Union[float, Literal["auto"]] = 0.0
        """Field level of the surface, or ``auto`` (the level whose mesh best matches the
        rendered silhouettes on export/conversion, else the mean field value above 1e-5)."""
        isosurface_chunk: int = 0
        """Grid points evaluated per field call during extraction (0: all at once)."""
        isosurface_coarse_to_fine: bool = True
        """Extract once over the whole box, then again inside the surface's box grown by 10%."""
        isosurface_deformable_grid: bool = False
        """Let the geometry's deformation field move the ``mt`` grid vertices (by up to a cell)."""
        isosurface_remove_outliers: bool = True
        """Drop small connected components from meshes that need no gradient."""
        # int before float: the strict converter keeps a YAML integer an absolute face count.
        isosurface_outlier_n_faces_threshold: Union[int, float] = 0.01
        """Components with fewer faces are dropped: a float is a fraction of the largest
        component's face count, an integer an absolute count."""

    _stored_isosurface_threshold: Optional[float] = None
    #: Whether ``forward_field`` is a signed distance (level = sdf - threshold), not a density:
    #: conversions to a tetrahedral SDF keep an SDF's levels and clamp a density's to [-1, 1].
    field_is_sdf: bool = False

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def forward_density(self, points: torch.Tensor) -> torch.Tensor:
        """Density ``[N, 1]`` only (cheap path for occupancy grids and isosurfaces)."""
        raise NotImplementedError

    def forward_field(self, points: torch.Tensor) -> torch.Tensor:
        """The scalar field whose level set is the surface (density for volumes)."""
        return self.forward_density(points)

    def forward_level(self, field: torch.Tensor, threshold: float) -> torch.Tensor:
        """Level values, positive outside: ``-(density - threshold)`` for density fields."""
        return -(field - threshold)

    def forward_deformation(self, points: torch.Tensor) -> torch.Tensor:
        """Per-point grid deformation ``[N, 3]`` for ``isosurface_deformable_grid`` (``mt``)."""
        raise ConfigError(
            f"{type(self).__name__} has no deformation field, so "
            f"{self.config_path}.isosurface_deformable_grid must be false."
        )

    def set_isosurface_threshold(self, value: Optional[float]) -> None:
        """Remember the threshold an ``auto`` config resolves to (``None`` forgets it).

        Not saved in checkpoints; the config is left untouched.
        """
        self._stored_isosurface_threshold = None if value is None else float(value)

    @property
    def stored_isosurface_threshold(self) -> Optional[float]:
        return self._stored_isosurface_threshold

    def _resolve_isosurface_threshold(self, threshold: Optional[float]) -> Union[float, str]:
        if threshold is not None:
            return float(threshold)
        configured = self.cfg.isosurface_threshold
        if configured != "auto":
            return float(configured)
        if self._stored_isosurface_threshold is not None:
            logger.info(
                "isosurface: threshold 'auto' resolved to the stored value %.6g",
                self._stored_isosurface_threshold,
            )
            return self._stored_isosurface_threshold
        return "auto"  # extract_isosurface falls back to the mean field value and logs it

    def isosurface(self, threshold: Optional[float] = None) -> Mesh:
        """The surface ``forward_level(forward_field(x), threshold) = 0`` as a world-space mesh.

        ``threshold=None`` uses ``isosurface_threshold``; ``auto`` means the value stored with
        :meth:`set_isosurface_threshold`, else the mean of the field values above 1e-5. An
        explicit ``threshold`` overrides both and changes no state. Gradients flow when the
        caller has them enabled (``mt``). Raises :class:`~studio.errors.StudioError` when the
        surface is empty.
        """
        from studio.mesh.isosurface import extract_isosurface

        cfg = self.cfg
        if not cfg.isosurface:
            raise ConfigError(
                f"{self.config_path}.isosurface is false, so this geometry cannot extract a "
                f"mesh; set {self.config_path}.isosurface=true."
            )
        return extract_isosurface(
            self.forward_field,
            self.bbox,
            method=cfg.isosurface_method,
            resolution=cfg.isosurface_resolution,
            threshold=self._resolve_isosurface_threshold(threshold),
            level_fn=self.forward_level,
            chunk=cfg.isosurface_chunk,
            coarse_to_fine=cfg.isosurface_coarse_to_fine,
            remove_outliers=cfg.isosurface_remove_outliers,
            outlier_threshold=cfg.isosurface_outlier_n_faces_threshold,
            deformation_fn=self.forward_deformation if cfg.isosurface_deformable_grid else None,
        )
