"""``implicit-volume``: density + features from one shared positional encoding (hash grid) and MLPs."""

from __future__ import annotations

import contextlib
from typing import Any, Literal, Optional, Union

import attrs
import torch
import torch.nn.functional as F

from studio.api import BaseImplicitGeometry, contract_to_unit_cube
from studio_dreamfusion.activations import (
    ValidatesActivations,
    get_activation,
    get_activation_slope,
)
from studio_dreamfusion.geometry.density import (
    analytic_normal,
    check_density_bias,
    density_bias,
    density_bias_with_gradient,
    finite_difference_normal,
)
from studio_dreamfusion.networks import defaults
from studio_dreamfusion.networks.configs import NetworkConfigs
from studio_dreamfusion.networks.encodings import (
    build_encoding,
    supports_jacobian,
)
from studio_dreamfusion.networks.mlp import (
    VanillaMLP,
    build_mlp,
)

NormalType = Literal[
    "analytic",
    "finite_difference",
    "finite_difference_forward",
    "finite_difference_laplacian",
    "pred",
]


class ImplicitVolume(NetworkConfigs, ValidatesActivations, BaseImplicitGeometry):
    """Normals: ``analytic`` (the gradient of the density), ``finite_difference`` (central, as
    the reference's original), ``finite_difference_forward`` (the reference's later default),
    ``finite_difference_laplacian`` (alias of central), ``pred`` (a third MLP head), or none.

    Analytic normals are computed in one of two equivalent ways. When the encoding gives its
    spatial Jacobian (studio's hash grid), the density MLP is a ``VanillaMLP`` and the density
    activation's derivative is known, the gradient is carried forward through the encoding, the
    MLP, the blob and the activation explicitly: losses on the normals then need first-order
    autograd only, which is several times faster than a double backward (docs/performance.md).
    Otherwise (tiny-cuda-nn, or positions that require grad) autograd differentiates the density
    with ``create_graph=True``, as the reference does.
    """

    @attrs.define(kw_only=True)
    class Config(BaseImplicitGeometry.Config):
        n_input_dims: int = 3
        """Dimensions of the encoded positions (3 for points in space)."""
        n_feature_dims: int = 3
        """Feature channels handed to the material (0: no feature network)."""
        density_activation: Optional[str] = "softplus"
        """Activation of raw density + bias: ``softplus``, ``trunc_exp``, ``exp``, ``relu``, ...
        or any ``torch.nn.functional`` name; null: none."""
        density_bias: Union[float, str] = "blob_magic3d"
        """Added to the raw density before the activation: ``blob_magic3d`` (alias ``blob``:
        ``scale * (1 - |x| / std)``), ``blob_dreamfusion`` (a Gaussian) or a constant."""
        density_blob_scale: float = 10.0
        """Value of the blob bias at the centre, before the activation (negative: a hole)."""
        density_blob_std: float = 0.5
        """Size of the blob in world units: ``blob_magic3d`` reaches 0 at this radius,
        ``blob_dreamfusion``'s standard deviation."""
        pos_encoding_config: dict[str, Any] = attrs.Factory(defaults.hash_grid)
        """Encoding of the positions (mapped to ``[0, 1]^3``): ``otype`` (HashGrid,
        ProgressiveBandHashGrid, SphericalHarmonics, Frequency) and its keys."""
        mlp_network_config: dict[str, Any] = attrs.Factory(
            lambda: defaults.mlp("VanillaMLP", 64, 1)
        )
        """The density, feature and normal MLPs: ``otype`` (VanillaMLP, FullyFusedMLP,
        CutlassMLP) and its keys."""
        normal_type: Optional[NormalType] = "finite_difference"
        """Normals: ``analytic`` (density gradient), ``finite_difference`` (central; alias
        ``finite_difference_laplacian``), ``finite_difference_forward``, ``pred`` (an MLP head) or
        null (none)."""
        finite_difference_normal_eps: float = 0.01
        """Step of finite-difference normals in world units."""
        isosurface_threshold: Union[float, Literal["auto"]] = 25.0
        """Density level of the extracted surface, or ``auto`` (chosen on export/conversion)."""

    encoding_fields = {"pos_encoding_config": "n_input_dims"}
    mlp_fields = ("mlp_network_config",)

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        check_density_bias(cfg.density_bias, f"{path}.density_bias")

    def configure(self) -> None:
        super().configure()
        cfg = self.cfg
        path = self.config_path
        self.encoding = build_encoding(
            cfg.n_input_dims, cfg.pos_encoding_config, f"{path}.pos_encoding_config"
        )
        n_enc = self.encoding.n_output_dims
        mlp_path = f"{path}.mlp_network_config"
        self.density_network = build_mlp(n_enc, 1, cfg.mlp_network_config, mlp_path)
        self.feature_network = (
            build_mlp(n_enc, cfg.n_feature_dims, cfg.mlp_network_config, mlp_path)
            if cfg.n_feature_dims > 0
            else None
        )
        self.normal_network = (
            build_mlp(n_enc, 3, cfg.mlp_network_config, mlp_path)
            if cfg.normal_type == "pred"
            else None
        )
        self._activation = get_activation(cfg.density_activation, f"{path}.density_activation")
        self._activation_slope = get_activation_slope(cfg.density_activation)
        #: Carry analytic normals forward explicitly when possible (False: always autograd's
        #: double backward, e.g. to compare the two; both give the same normals and gradients).
        self.explicit_analytic_normals = True
        density_bias(torch.zeros(1, 3), cfg.density_bias, 1.0, 1.0)  # validates the bias kind early

    def _encode(self, points: torch.Tensor) -> torch.Tensor:
        unit = contract_to_unit_cube(points, self.cfg.radius).clamp(0.0, 1.0)
        return self.encoding(unit.reshape(-1, self.cfg.n_input_dims))

    def _density(self, points: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        raw = self.density_network(encoded).reshape(-1, 1)
        bias = density_bias(
            points, self.cfg.density_bias, self.cfg.density_blob_scale, self.cfg.density_blob_std
        )
        return self._activation(raw + bias)

    def forward_density(self, points: torch.Tensor) -> torch.Tensor:
        points = points.reshape(-1, 3)
        return self._density(points, self._encode(points))

    def _explicit_normals_apply(self, points: torch.Tensor) -> bool:
        return (
            self.explicit_analytic_normals
            and self.cfg.normal_type == "analytic"
            and self._activation_slope is not None
            and isinstance(self.density_network, VanillaMLP)
            and supports_jacobian(self.encoding)
            and not (points.requires_grad and torch.is_grad_enabled())
        )

    def _forward_explicit_normal(self, points: torch.Tensor) -> dict[str, Any]:
        """Density, features and analytic normals with the gradient carried forward (no
        double backward); see the class docstring."""
        cfg = self.cfg
        unit = contract_to_unit_cube(points, cfg.radius)
        # d unit / d x = 1 / (2r) inside the box; clamp passes no gradient outside (autograd's
        # clamp keeps it on the boundary itself, and so does this mask).
        inside = ((unit >= 0.0) & (unit <= 1.0)).to(points.dtype) / (2.0 * cfg.radius)
        encoded, jacobian = self.encoding.forward_with_jacobian(unit.clamp(0.0, 1.0))
        jacobian = jacobian * inside.unsqueeze(-1)
        raw, raw_jacobian = self.density_network.forward_with_jacobian(encoded, jacobian)
        bias, bias_gradient = density_bias_with_gradient(
            points, cfg.density_bias, cfg.density_blob_scale, cfg.density_blob_std
        )
        pre = raw.reshape(-1, 1) + bias
        assert self._activation_slope is not None
        gradient = self._activation_slope(pre) * (raw_jacobian.reshape(-1, 3) + bias_gradient)
        out: dict[str, Any] = {"density": self._activation(pre)}
        if self.feature_network is not None:
            out["features"] = self.feature_network(encoded)
        normal = F.normalize(-gradient, dim=-1)
        out["normal"] = normal
        out["shading_normal"] = normal
        return out

    def graph_state(self) -> tuple:
        """No host state of its own (its progressive encoding declares its levels)."""
        return ()

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        points = points.reshape(-1, 3)
        if output_normal and self._explicit_normals_apply(points):
            return self._forward_explicit_normal(points)
        analytic = output_normal and cfg.normal_type == "analytic"
        grad_enabled = torch.is_grad_enabled()
        with torch.enable_grad() if analytic else contextlib.nullcontext():
            if analytic and not points.requires_grad:
                points = points.detach().requires_grad_(True)
            encoded = self._encode(points)
            density = self._density(points, encoded)
            out: dict[str, Any] = {"density": density}
            if self.feature_network is not None:
                out["features"] = self.feature_network(encoded)
            if output_normal and cfg.normal_type is not None:
                normal = self._normal(points, encoded, density, create_graph=grad_enabled)
                if not grad_enabled:
                    normal = normal.detach()
                    out = {k: v.detach() for k, v in out.items()}
                out["normal"] = normal
                out["shading_normal"] = normal
        return out

    def _normal(
        self, points: torch.Tensor, encoded: torch.Tensor, density: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        cfg = self.cfg
        if cfg.normal_type == "analytic":
            return analytic_normal(density, points, create_graph=create_graph)
        if cfg.normal_type == "pred":
            return F.normalize(self.normal_network(encoded), dim=-1)
        r = cfg.radius
        clamped = points.clamp(-r, r)
        central = cfg.normal_type in ("finite_difference", "finite_difference_laplacian")
        return finite_difference_normal(
            self.forward_density, clamped, density, cfg.finite_difference_normal_eps, central
        )

    def export(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-point features for texture baking."""
        out = self.forward(points, output_normal=False)
        return {"features": out["features"]} if "features" in out else {}
