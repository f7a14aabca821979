"""``implicit-sdf``: a signed distance and features from one shared positional encoding and MLPs.

The field is ``sdf(x) = sdf_network(enc(x)) + sdf_bias(x)``, negative inside and positive outside,
in world units. Its zero set is the surface: marching tetrahedra take the level ``sdf - threshold``
unchanged (``field_is_sdf``), so a ``tetrahedra-sdf-grid`` converted from it keeps the signed
distances unclamped. With ``isosurface_deformable_grid`` (``mt`` only) a third MLP gives each grid
vertex an offset that core's marching tetrahedra apply as ``grid + tanh(offset) / resolution``.
``initialize_shape()`` fits the network to a sphere, an ellipsoid or a mesh
(:mod:`studio_fantasia3d.geometry.shape_init`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

import attrs
import torch
import torch.nn.functional as F

from studio.api import (
    BaseImplicitGeometry,
    ConfigError,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    contract_to_unit_cube,
)
from studio_dreamfusion.networks import defaults
from studio_dreamfusion.networks.configs import NetworkConfigs
from studio_dreamfusion.networks.encodings import build_encoding
from studio_dreamfusion.networks.mlp import build_mlp
from studio_fantasia3d.geometry.shape_init import (
    check_sdf_bias,
    check_shape_init,
    describe_shape,
    sdf_bias,
    target_sdf,
)

logger = logging.getLogger(__name__)

NormalType = Literal[
    "analytic",
    "finite_difference",
    "finite_difference_forward",
    "finite_difference_laplacian",
    "pred",
]
Axis = Literal["+x", "-x", "+y", "-y", "+z", "-z"]


def finite_difference_gradient(
    fn: Callable[[torch.Tensor], torch.Tensor],
    points: torch.Tensor,
    value: torch.Tensor,
    eps: float,
    central: bool,
) -> torch.Tensor:
    """``grad fn`` ``[N, 3]`` at ``points [N, 3]``: central ``(f(x + eps e_i) - f(x - eps e_i)) /
    (2 eps)`` or forward ``(f(x + eps e_i) - f(x)) / eps`` (``value = f(points)``)."""
    offsets = torch.eye(3, device=points.device, dtype=points.dtype) * eps
    plus = fn((points[:, None, :] + offsets).reshape(-1, 3)).reshape(-1, 3)
    if central:
        minus = fn((points[:, None, :] - offsets).reshape(-1, 3)).reshape(-1, 3)
        return 0.5 * (plus - minus) / eps
    return (plus - value.reshape(-1, 1)) / eps


class ImplicitSDF(NetworkConfigs, BaseImplicitGeometry):
    """``forward(points, output_normal)`` returns ``sdf [N, 1]``, ``features [N, F]`` (unless
    ``n_feature_dims`` is 0) and, when asked, ``normal`` and ``shading_normal`` (unit, pointing
    outwards: ``+grad sdf`` normalised) and ``sdf_grad`` (the gradient estimate, for an eikonal
    loss; not with ``pred``).

    Normals: ``finite_difference`` (central differences; alias ``finite_difference_laplacian``),
    ``finite_difference_forward``, ``analytic`` (autograd, differentiable when grad is on),
    ``pred`` (a third MLP head) or null (none). Finite differences step
    ``finite_difference_normal_eps`` from points clamped to the box.
    """

    @attrs.define(kw_only=True)
    class Config(BaseImplicitGeometry.Config):
        n_input_dims: int = 3
        """Dimensions of the encoded positions (3: points in space)."""
        n_feature_dims: NonNegativeInt = 3
        """Feature channels handed to the material (0: no feature network)."""
        pos_encoding_config: dict[str, Any] = attrs.Factory(defaults.hash_grid)
        """Encoding of the positions (mapped to ``[0, 1]^3``): ``otype`` (HashGrid,
        ProgressiveBandHashGrid, SphericalHarmonics, Frequency) and its keys."""
        mlp_network_config: dict[str, Any] = attrs.Factory(
            lambda: defaults.mlp("VanillaMLP", 64, 1)
        )
        """The SDF, feature, normal and deformation MLPs: ``otype`` (VanillaMLP,
        FullyFusedMLP, CutlassMLP) and its keys."""
        normal_type: Optional[NormalType] = "finite_difference"
        """Normals: ``finite_difference`` (central; alias ``finite_difference_laplacian``),
        ``finite_difference_forward``, ``analytic`` (autograd), ``pred`` (an MLP head) or null."""
        finite_difference_normal_eps: PositiveFloat = 0.01
        """Step of finite-difference normals in world units."""
        shape_init: Optional[str] = None
        """Shape ``initialize_shape`` fits the SDF to: ``sphere``, ``ellipsoid``, ``mesh:PATH``
        or null (none)."""
        shape_init_params: Optional[Union[float, list[float]]] = None
        """Sphere radius, 3 ellipsoid radii, or a mesh's largest absolute coordinate."""
        shape_init_mesh_up: Axis = "+z"
        """The mesh's up axis, turned to +z."""
        shape_init_mesh_front: Axis = "+x"
        """The mesh's front axis, turned to +x (orthogonal to the up axis)."""
        force_shape_init: bool = False
        """Initialise the shape even when ``weights`` are loaded."""
        shape_init_steps: PositiveInt = 1000
        """Adam steps of ``initialize_shape`` (the reference's 1000; fewer for CPU presets)."""
        shape_init_n_points: PositiveInt = 10_000
        """Random points of the box per ``initialize_shape`` step (the reference's 10000)."""
        shape_init_lr: PositiveFloat = 1e-3
        """Adam learning rate of ``initialize_shape`` (the reference's 1e-3)."""
        sdf_bias: Union[float, Literal["sphere", "ellipsoid"]] = 0.0
        """Added to the network's SDF: a constant, or the SDF of a ``sphere``/``ellipsoid``
        (sized by ``sdf_bias_params``). Not together with ``shape_init``."""
        sdf_bias_params: Optional[Union[float, list[float]]] = None
        """Sphere radius or 3 ellipsoid radii of ``sdf_bias``."""
        isosurface_remove_outliers: bool = False
        """Drop small connected components from meshes that need no gradient."""

    encoding_fields = {"pos_encoding_config": "n_input_dims"}
    mlp_fields = ("mlp_network_config",)
    field_is_sdf = True

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        """The networks' sub-configs, the shape keys (:func:`check_shape_init`,
        :func:`check_sdf_bias`) and the deformable grid's method."""
        super().validate_config(cfg, path)
        if cfg.n_input_dims != 3:
            raise ConfigError(
                f"{path}.n_input_dims={cfg.n_input_dims}: a signed distance field takes points in "
                "space; set it to 3."
            )
        if cfg.isosurface_deformable_grid and cfg.isosurface_method != "mt":
            raise ConfigError(
                f"{path}.isosurface_deformable_grid=true moves the vertices of the marching "
                f"tetrahedra grid, but {path}.isosurface_method={cfg.isosurface_method!r} has no "
                f"such grid. Set {path}.isosurface_method=mt, or "
                f"{path}.isosurface_deformable_grid=false."
            )
        check_sdf_bias(cfg, path)
        check_shape_init(cfg, path)

    def configure(self) -> None:
        super().configure()
        cfg = self.cfg
        path = self.config_path
        self.validate_config(cfg, path)
        self.encoding = build_encoding(
            cfg.n_input_dims, cfg.pos_encoding_config, f"{path}.pos_encoding_config"
        )
        n_enc = self.encoding.n_output_dims
        mlp_path = f"{path}.mlp_network_config"

        def mlp(n_out: int) -> torch.nn.Module:
            return build_mlp(n_enc, n_out, cfg.mlp_network_config, mlp_path)

        self.sdf_network = mlp(1)
        self.feature_network = mlp(cfg.n_feature_dims) if cfg.n_feature_dims > 0 else None
        self.normal_network = mlp(3) if cfg.normal_type == "pred" else None
        self.deformation_network = mlp(3) if cfg.isosurface_deformable_grid else None
        #: ``(points, their version, their encoding)`` from the last ``forward_field``
        self._shared_encoding: Optional[tuple[torch.Tensor, int, torch.Tensor]] = None

    # -- the field -------------------------------------------------------------------------------

    def _encode(self, points: torch.Tensor) -> torch.Tensor:
        unit = contract_to_unit_cube(points, self.cfg.radius).clamp(0.0, 1.0)
        return self.encoding(unit.reshape(-1, self.cfg.n_input_dims))

    def _sdf(self, points: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        raw = self.sdf_network(encoded).reshape(-1, 1)
        return raw + sdf_bias(points, self.cfg.sdf_bias, self.cfg.sdf_bias_params).to(raw)

    def forward_sdf(self, points: torch.Tensor) -> torch.Tensor:
        """``sdf [N, 1]`` at world ``points [..., 3]`` (network output plus ``sdf_bias``)."""
        points = points.reshape(-1, 3)
        return self._sdf(points, self._encode(points))

    def forward_field(self, points: torch.Tensor) -> torch.Tensor:
        """The signed distance (the field marching tetrahedra extract). With a deformable grid
        the encoding of ``points`` is kept for the :meth:`forward_deformation` call that follows
        on the same tensor (marching tetrahedra ask for both at the grid's vertices), so the
        hash grid runs once per extraction instead of twice."""
        flat = points.reshape(-1, 3)
        encoded = self._encode(flat)
        if self.deformation_network is not None:
            self._shared_encoding = (points, points._version, encoded)
        return self._sdf(flat, encoded)

    def forward_level(self, field: torch.Tensor, threshold: float) -> torch.Tensor:
        """``sdf - threshold``: positive outside, as marching tetrahedra expect."""
        return field - threshold

    def forward_deformation(self, points: torch.Tensor) -> torch.Tensor:
        """Raw grid offsets ``[N, 3]`` (core applies ``tanh(offset) / resolution``)."""
        if self.deformation_network is None:
            return super().forward_deformation(points)
        shared, self._shared_encoding = self._shared_encoding, None
        if shared is not None and shared[0] is points and shared[1] == points._version:
            encoded = shared[2]
        else:
            encoded = self._encode(points.reshape(-1, 3))
        return self.deformation_network(encoded).reshape(-1, 3)

    def forward_density(self, points: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            f"{self.config_path}: implicit-sdf holds a signed distance, not a density, so it "
            "cannot be volume-rendered by a NeRF renderer; render it with nvdiff-rasterizer "
            "(its surface comes from isosurface())."
        )

    def forward(self, points: torch.Tensor, output_normal: bool = False) -> dict[str, Any]:
        """See the class docstring; ``points [..., 3]`` are flattened to ``[N, 3]``."""
        cfg = self.cfg
        points = points.reshape(-1, 3)
        analytic = output_normal and cfg.normal_type == "analytic"
        grad_enabled = torch.is_grad_enabled()
        with torch.enable_grad() if analytic else contextlib.nullcontext():
            if analytic and not points.requires_grad:
                points = points.detach().requires_grad_(True)
            encoded = self._encode(points)
            sdf = self._sdf(points, encoded)
            out: dict[str, Any] = {"sdf": sdf}
            if self.feature_network is not None:
                out["features"] = self.feature_network(encoded)
            if output_normal and cfg.normal_type is not None:
                out.update(self._normal(points, encoded, sdf, create_graph=grad_enabled))
                if not grad_enabled:
                    out = {k: v.detach() for k, v in out.items()}
        return out

    def _normal(
        self, points: torch.Tensor, encoded: torch.Tensor, sdf: torch.Tensor, create_graph: bool
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if cfg.normal_type == "pred":
            assert self.normal_network is not None
            normal = F.normalize(self.normal_network(encoded), dim=-1)
            return {"normal": normal, "shading_normal": normal}
        if cfg.normal_type == "analytic":
            (gradient,) = torch.autograd.grad(
                sdf, points, grad_outputs=torch.ones_like(sdf), create_graph=create_graph
            )
        else:
            r = cfg.radius
            central = cfg.normal_type != "finite_difference_forward"
            gradient = finite_difference_gradient(
                self.forward_sdf,
                points.clamp(-r, r),
                sdf,
                cfg.finite_difference_normal_eps,
                central,
            )
        normal = F.normalize(gradient, dim=-1)
        return {"normal": normal, "shading_normal": normal, "sdf_grad": gradient}

    def export(self, points: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Per-point features for texture baking (``{}`` without a feature network)."""
        out = self.forward(points, output_normal=False)
        return {"features": out["features"]} if "features" in out else {}

    # -- shape initialisation --------------------------------------------------------------------

    def initialize_shape(
        self,
        n_steps: Optional[int] = None,
        n_points: Optional[int] = None,
        lr: Optional[float] = None,
        log_every: int = 100,
    ) -> Optional[float]:
        """Fit the SDF to ``shape_init``: ``n_steps`` Adam steps (learning rate ``lr``) on the
        mean squared error between ``forward_sdf`` and the target SDF at ``n_points`` fresh
        uniform points of ``[-radius, radius]^3`` per step; None takes ``shape_init_steps``,
        ``shape_init_n_points`` and ``shape_init_lr`` (by default the reference's 1000, 10000,
        1e-3). Every parameter is in the optimizer, as in the reference (only the encoding and
        the SDF network get gradients). Deterministic given torch's seed; logs the loss every
        ``log_every`` steps. Skipped (returns None) without ``shape_init``, or when ``weights``
        were loaded and ``force_shape_init`` is false; otherwise returns the last step's MSE."""
        cfg = self.cfg
        if cfg.shape_init is None:
            return None
        if cfg.weights is not None and not cfg.force_shape_init:
            logger.info(
                "shape init: skipped, %s.weights are loaded (set force_shape_init to redo it)",
                self.config_path,
            )
            return None
        n_steps = cfg.shape_init_steps if n_steps is None else n_steps
        n_points = cfg.shape_init_n_points if n_points is None else n_points
        lr = cfg.shape_init_lr if lr is None else lr
        target = target_sdf(cfg, self.config_path)
        shape = describe_shape(cfg)
        logger.info(
            "shape init: fitting the SDF to %s, %d Adam steps of %d points",
            shape,
            n_steps,
            n_points,
        )
        r = cfg.radius
        device = self.bbox.device
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        start = time.perf_counter()
        loss_value = float("nan")
        with torch.enable_grad():
            for step in range(1, n_steps + 1):
                points = (torch.rand(n_points, 3, device=device) * 2.0 - 1.0) * r
                loss = F.mse_loss(self.forward_sdf(points), target(points))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step % max(log_every, 1) == 0 or step == n_steps:
                    loss_value = float(loss.detach())  # a device sync, so only when logging
                    logger.info("shape init: step %d/%d, SDF MSE %.3g", step, n_steps, loss_value)
        logger.info(
            "shape init: %s done in %.1f s (RMS SDF error %.3g)",
            shape,
            time.perf_counter() - start,
            loss_value**0.5,
        )
        return loss_value
