"""``pbr-material``: albedo, metallic, roughness and a bump map, lit by an environment map.

Fantasia3D's texture stage (reference §4.3). Eight feature channels per surface point, each
through ``material_activation`` (sigmoid), become::

    albedo     = a[0:3]        (a[0:3] = sigmoid(features[0:3] + albedo_start), see below)
    metallic   = min_metallic  + (max_metallic  - min_metallic)  * a[3]
    roughness  = min_roughness + (max_roughness - min_roughness) * a[4]
    bump       = normalize(2 a[5:8] - 1 + (0, 0, 1))        (tangent space; (0, 0, 1): no change)

``albedo_start`` is a stored logit offset, zero unless :meth:`PBRMaterial.start_albedo_from`
set it: a texture stage can start from a known colour (Fantasia3D's primitives presets start from
the geometry stage's learned Lambert colour) with the field still free to change it. It is a
buffer, so checkpoints keep it and a resumed run or an export sees the same albedo.

The bump perturbs the interpolated surface normal in the tangent frame of the mesh's UV atlas
(``t`` the tangent along increasing U, ``b = sign * (n x t)`` along increasing V)::

    n' = normalize(bump.x * t + bump.y * b + bump.z * n)

and the split-sum image-based lighting of :mod:`studio_fantasia3d.lighting` shades it::

    F0    = 0.04 (1 - metallic) + metallic * albedo
    rgb   = (1 - metallic) * albedo * E(n') + (F0 * A + B) * S(reflect(-v, n'), roughness)

``E`` the environment's diffuse irradiance / pi, ``S`` its GGX-prefiltered radiance, ``(A, B)``
the split-sum lookup table at ``(n'.v, roughness)``. The result is linear radiance clamped to
``[0, 1]`` (as the reference, no tone mapping). The environment (``environment_texture``) is the
procedural sky ``sky``, the grey ``studio`` with a sun, or an equirectangular ``.hdr`` / ``.exr``
file, times
``environment_scale``; it is rebuilt from the config (never stored in checkpoints). With
``environment_follows_light`` (ours) each view turns the environment so that its key direction
follows the view's light (:mod:`studio_fantasia3d.lighting.follow`).
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import torch
import torch.nn.functional as F

from studio.api import BaseMaterial, ConfigError, NonNegativeFloat, StudioError
from studio_dreamfusion.activations import ValidatesActivations, get_activation
from studio_fantasia3d.lighting import EnvironmentLight, brdf_lut, shade_split_sum
from studio_fantasia3d.lighting.follow import key_direction, rotate_onto

#: Feature channels the material reads: albedo 3, metallic 1, roughness 1, bump 3.
N_FEATURES = 8


def perturb_normal(
    normal: torch.Tensor,
    tangent: torch.Tensor,
    sign: torch.Tensor,
    bump: torch.Tensor,
) -> torch.Tensor:
    """``normalize(bump.x t + bump.y b + bump.z n)`` with ``t`` the tangent made orthogonal to
    ``n`` (Gram-Schmidt) and ``b = sign * (n x t)``; all ``[N, 3]`` (``sign [N, 1]``)."""
    n = F.normalize(normal, dim=-1)
    t = F.normalize(tangent - (tangent * n).sum(-1, keepdim=True) * n, dim=-1)
    b = sign * torch.cross(n, t, dim=-1)
    return F.normalize(bump[..., 0:1] * t + bump[..., 1:2] * b + bump[..., 2:3] * n, dim=-1)


class PBRMaterial(ValidatesActivations, BaseMaterial):
    @attrs.define(kw_only=True)
    class Config(BaseMaterial.Config):
        material_activation: str = "sigmoid"
        """Activation of all eight feature channels before they are mapped to ranges."""
        environment_texture: str = "sky"
        """The environment light: ``sky`` (a procedural HDR sky with a sun, made in code),
        ``studio`` (a uniform grey ambient and a white sun: a white Lambertian surface reflects
        ``0.25 + 0.75 max(0, n . sun)``, the primitives data set's shading) or the path of an
        equirectangular ``.hdr`` / ``.exr`` file."""
        environment_scale: NonNegativeFloat = 2.0
        """Multiplies the environment's radiance."""
        environment_follows_light: bool = False
        """Turn the environment per view so that its key direction (where most of its light
        comes from: the sky's sun) points along the view's light (``light_positions``), so no
        view sees the object backlit. Ours, for models trained on objects lit from near the
        camera (the primitives ones); the reference keeps the environment fixed."""
        min_metallic: float = 0.0
        """Metallic value of a feature at the activation's minimum."""
        max_metallic: float = 0.9
        """Metallic value of a feature at the activation's maximum."""
        min_roughness: float = 0.08
        """Roughness of a feature at the activation's minimum."""
        max_roughness: float = 0.9
        """Roughness of a feature at the activation's maximum."""
        use_bump: bool = True
        """Perturb normals by the tangent-space bump channels (needs the mesh's UV tangents)."""
        lut_resolution: int = 256
        """Side of the split-sum lookup table over (n.v, roughness)."""

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        for name in ("metallic", "roughness"):
            low, high = getattr(cfg, f"min_{name}"), getattr(cfg, f"max_{name}")
            if not 0.0 <= low <= high <= 1.0:
                raise ConfigError(
                    f"{path}.min_{name}={low} and {path}.max_{name}={high} must satisfy "
                    f"0 <= min_{name} <= max_{name} <= 1 (the reference uses "
                    f"{'0.0 and 0.9' if name == 'metallic' else '0.08 and 0.9'})."
                )
        if cfg.lut_resolution < 8:
            raise ConfigError(
                f"{path}.lut_resolution={cfg.lut_resolution} is too coarse; use 256 (the "
                "reference's table) or at least 8."
            )

    def configure(self) -> None:
        cfg = self.cfg
        self.requires_normal = True
        self.requires_tangent = cfg.use_bump
        self._activation = get_activation(
            cfg.material_activation, f"{self.config_path}.material_activation"
        )
        self._lights: dict[str, EnvironmentLight] = {}
        self._luts: dict[str, torch.Tensor] = {}
        self._keys: dict[str, torch.Tensor] = {}
        self.register_buffer("albedo_start", torch.zeros(3))

    def start_albedo_from(self, colour: torch.Tensor) -> None:
        """Offset the albedo's pre-activation so that a field whose output is zero shows
        ``colour [3]`` (in ``(0, 1)``): ``albedo_start = logit(colour)``, clamped away from 0
        and 1. Needs the ``sigmoid`` activation (the logit is its inverse)."""
        if self.cfg.material_activation != "sigmoid":
            raise ConfigError(
                f"{self.config_path}.material_activation={self.cfg.material_activation!r}: "
                "starting the albedo from a colour inverts the sigmoid activation; set it to "
                "sigmoid or do not start the albedo from the geometry stage's colour."
            )
        with torch.no_grad():
            value = torch.logit(colour.detach().float().clamp(1e-3, 1.0 - 1e-3))
            self.albedo_start.copy_(value.to(self.albedo_start))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kw: Any) -> None:
        """Checkpoints written before ``albedo_start`` existed load with a zero start (torch
        hands this method its own copy of the state, so the default is added to that copy)."""
        state_dict.setdefault(prefix + "albedo_start", torch.zeros_like(self.albedo_start))
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    # -- lighting, built per device on first use and never checkpointed --------------------------

    def light(self, device: torch.device) -> EnvironmentLight:
        """The configured environment on ``device`` (a ConfigError names a bad file)."""
        key = str(device)
        if key not in self._lights:
            source = self.cfg.environment_texture
            try:
                light = EnvironmentLight.from_source(source, scale=self.cfg.environment_scale)
            except ConfigError as exc:
                raise ConfigError(f"{self.config_path}.environment_texture: {exc}") from None
            self._lights[key] = light.to(device)
        return self._lights[key]

    def key(self, device: torch.device) -> torch.Tensor:
        """The environment's key direction ``[3]`` on ``device``."""
        key = str(device)
        if key not in self._keys:
            self._keys[key] = key_direction(self.light(device))
        return self._keys[key]

    def lut(self, device: torch.device) -> torch.Tensor:
        """The split-sum table ``[R, R, 2]`` on ``device``."""
        key = str(device)
        if key not in self._luts:
            self._luts[key] = brdf_lut(self.cfg.lut_resolution, device=device)
        return self._luts[key]

    # -- channels ---------------------------------------------------------------------------------

    def channels(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``albedo [N, 3]``, ``metallic [N, 1]``, ``roughness [N, 1]`` in their ranges and the
        unit tangent-space ``bump [N, 3]`` from raw ``features [N, 8]``."""
        if features.shape[-1] != N_FEATURES:
            raise StudioError(
                f"{self.config_path}: pbr-material reads {N_FEATURES} feature channels (albedo 3, "
                f"metallic 1, roughness 1, bump 3) but the geometry gives {features.shape[-1]}; "
                f"set system.geometry.n_feature_dims={N_FEATURES}."
            )
        cfg = self.cfg
        offset = F.pad(self.albedo_start, (0, N_FEATURES - 3)).to(features)
        a = self._activation(features + offset)
        flat = torch.zeros_like(a[..., 5:8])
        flat[..., 2] = 1.0
        return {
            "albedo": a[..., 0:3],
            "metallic": cfg.min_metallic + (cfg.max_metallic - cfg.min_metallic) * a[..., 3:4],
            "roughness": cfg.min_roughness + (cfg.max_roughness - cfg.min_roughness) * a[..., 4:5],
            "bump": F.normalize(a[..., 5:8] * 2.0 - 1.0 + flat, dim=-1),
        }

    def forward(
        self,
        features: torch.Tensor,
        viewdirs: torch.Tensor,
        shading_normal: Optional[torch.Tensor] = None,
        tangent: Optional[torch.Tensor] = None,
        tangent_sign: Optional[torch.Tensor] = None,
        light_positions: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Shaded colours ``[N, 3]`` in ``[0, 1]``. ``viewdirs [N, 3]`` point from the camera to
        the surface; ``shading_normal [N, 3]`` the interpolated mesh normals; with ``use_bump``,
        ``tangent [N, 3]`` and ``tangent_sign [N, 1]`` (default +1) from the UV atlas; with
        ``environment_follows_light``, ``light_positions [N, 3]`` (their directions from the
        origin are the views' lights)."""
        if shading_normal is None:
            raise StudioError(
                f"{self.config_path}: pbr-material shades with surface normals; render it with a "
                "mesh renderer (nvdiff-rasterizer) that passes them."
            )
        ch = self.channels(features)
        normal = F.normalize(shading_normal, dim=-1)
        if self.cfg.use_bump:
            if tangent is None:
                raise StudioError(
                    f"{self.config_path}.use_bump=true needs the mesh's UV tangents, which the "
                    "renderer did not pass; render with nvdiff-rasterizer or set "
                    f"{self.config_path}.use_bump=false."
                )
            sign = torch.ones_like(normal[..., :1]) if tangent_sign is None else tangent_sign
            normal = perturb_normal(normal, tangent, sign, ch["bump"])
        to_camera = -F.normalize(viewdirs, dim=-1)
        if self.cfg.environment_follows_light:
            if light_positions is None:
                raise StudioError(
                    f"{self.config_path}.environment_follows_light=true needs the views' "
                    "light_positions, which the renderer did not pass; render with "
                    f"nvdiff-rasterizer or set {self.config_path}.environment_follows_light=false."
                )
            light_dir = F.normalize(light_positions.to(normal), dim=-1)
            key = self.key(features.device).to(normal)
            normal, to_camera = rotate_onto(light_dir[None], key, torch.stack((normal, to_camera)))
        color = shade_split_sum(
            self.light(features.device),
            ch["albedo"],
            ch["metallic"],
            ch["roughness"],
            normal,
            to_camera,
            lut=self.lut(features.device),
        )
        return color.clamp(0.0, 1.0)

    def export(self, features: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        """``albedo``, ``metallic``, ``roughness`` and ``bump`` (the tangent-space normal encoded
        as ``(n + 1) / 2``), each in ``[0, 1]`` (the mesh exporter's PBR channels)."""
        ch = self.channels(features)
        return {
            "albedo": ch["albedo"].clamp(0.0, 1.0),
            "metallic": ch["metallic"],
            "roughness": ch["roughness"],
            "bump": (ch["bump"] + 1.0) / 2.0,
        }
