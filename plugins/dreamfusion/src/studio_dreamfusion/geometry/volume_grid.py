"""``volume-grid``: a dense learnable grid of density + features sampled trilinearly (used by SJC)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import attrs
import torch
import torch.nn.functional as F

from studio.api import BaseImplicitGeometry
from studio_dreamfusion.activations import ValidatesActivations, get_activation
from studio_dreamfusion.geometry.density import (
    check_density_bias,
    density_bias,
    finite_difference_normal,
)


class VolumeGrid(ValidatesActivations, BaseImplicitGeometry):
    """``density = act(raw * exp(density_scale) + bias)``; ``density_scale`` is a learnable scalar
    (initialised 0) unless the bias is ``blob`` (then a fixed 0). Finite-difference normals are
    central differences.
    """

    @attrs.define(kw_only=True)
    class Config(BaseImplicitGeometry.Config):
        grid_size: tuple[int, int, int] = (100, 100, 100)
        """Grid cells along z, y and x (the grid spans ``[-radius, radius]^3``)."""
        n_feature_dims: int = 3
        """Feature channels stored in the grid and handed to the material."""
        density_activation: Optional[str] = "softplus"
        """Activation of the scaled density + bias: ``softplus``, ``trunc_exp``, ``exp``, ... or
        any ``torch.nn.functional`` name; null: none."""
        density_bias: Union[float, str] = "blob"
        """Added before the activation: ``blob`` (alias ``blob_magic3d``: ``scale * (1 - |x| /
        std)``), ``blob_dreamfusion`` (a Gaussian) or a constant; only ``blob`` fixes the density
        scale at 1, others learn it."""
        density_blob_scale: float = 5.0
        """Value of the blob bias at the centre, before the activation (negative: a hole)."""
        density_blob_std: float = 0.5
        """Size of the blob in world units: ``blob`` reaches 0 at this radius,
        ``blob_dreamfusion``'s standard deviation."""
        normal_type: Optional[Literal["finite_difference", "pred"]] = "finite_difference"
        """Normals: ``finite_difference`` (central), ``pred`` (a second, 3-channel grid) or null
        (none)."""
        finite_difference_normal_eps: float = 1e-3
        """Step of finite-difference normals in world units."""
        isosurface_threshold: Union[float, Literal["auto"]] = "auto"
        """Density level of the extracted surface, or ``auto`` (chosen on export/conversion)."""

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        check_density_bias(cfg.density_bias, f"{path}.density_bias")

    def configure(self) -> None:
        super().configure()
        cfg = self.cfg
        size = tuple(cfg.grid_size)
        self.grid = torch.nn.Parameter(torch.zeros(1, cfg.n_feature_dims + 1, *size))
        if cfg.density_bias == "blob":
            self.register_buffer("density_scale", torch.zeros(()))
        else:
            self.density_scale = torch.nn.Parameter(torch.zeros(()))
        if cfg.normal_type == "pred":
            self.normal_grid = torch.nn.Parameter(torch.zeros(1, 3, *size))
        self._activation = get_activation(
            cfg.density_activation, f"{self.config_path}.density_activation"
        )

    def _sample(self, grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Trilinear lookup ``[N, C]``; points in world space, grid axes (x, y, z) -> (W, H, D)."""
        normalized = (points / self.cfg.radius).reshape(1, 1, 1, -1, 3)
        values = F.grid_sample(grid, normalized, mode="bilinear", align_corners=False)
        return values.reshape(grid.shape[1], -1).t()

    def _density(self, points: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        # the reference's volume-grid takes the blob of detached points
        bias = density_bias(
            points.detach(), cfg.density_bias, cfg.density_blob_scale, cfg.density_blob_std
        )
        return self._activation(raw * torch.exp(self.density_scale) + bias)

    def forward_density(self, points: torch.Tensor) -> torch.Tensor:
        points = points.reshape(-1, 3)
        return self._density(points, self._sample(self.grid[:, :1], points))

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        points = points.reshape(-1, 3)
        values = self._sample(self.grid, points)
        density = self._density(points, values[:, :1])
        out: dict[str, Any] = {"density": density, "features": values[:, 1:]}
        if output_normal and self.cfg.normal_type == "finite_difference":
            r = self.cfg.radius
            normal = finite_difference_normal(
                self.forward_density,
                points.clamp(-r, r),
                density,
                self.cfg.finite_difference_normal_eps,
                True,
            )
            out["normal"] = out["shading_normal"] = normal
        elif output_normal and self.cfg.normal_type == "pred":
            normal = F.normalize(self._sample(self.normal_grid, points), dim=-1)
            out["normal"] = out["shading_normal"] = normal
        return out
