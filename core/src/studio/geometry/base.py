"""The implicit-geometry contract every NeRF/SDF geometry follows.

Points are world coordinates inside the bounding box ``[-radius, radius]^3``. A geometry returns
per-point ``density`` (or ``sdf``), ``features`` and, when asked, ``normal``; ``forward_field``
returns the scalar field used for isosurface extraction and ``forward_level`` turns it into a
level set that is positive outside the surface; ``isosurface`` extracts that surface as a mesh.
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


class BaseImplicitGeometry(BaseModule):
    """Isosurface settings (``isosurface_*``) follow the reference: marching tetrahedra (``mt``)
    or PyMCubes (``mc-cpu``) at ``isosurface_resolution``; ``isosurface_threshold`` is a number
    or ``auto``; ``isosurface_outlier_n_faces_threshold`` is a fraction of the largest
    component's face count (a float) or an absolute face count (an integer).
    """

    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        radius: float = 1.0
        isosurface: bool = True
        isosurface_method: Literal["mt", "mc-cpu"] = "mt"
        isosurface_resolution: int = 128
        isosurface_threshold: Union[float, Literal["auto"]] = 0.0
        isosurface_chunk: int = 0
        isosurface_coarse_to_fine: bool = True
        isosurface_deformable_grid: bool = False
        isosurface_remove_outliers: bool = True
        # int before float: the strict converter keeps a YAML integer an absolute face count.
        isosurface_outlier_n_faces_threshold: Union[int, float] = 0.01

    config_path = "system.geometry"
    _stored_isosurface_threshold: Optional[float] = None

    def configure(self) -> None:
        r = self.cfg.radius
        self.register_buffer(
            "bbox", torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32), persistent=False
        )

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
