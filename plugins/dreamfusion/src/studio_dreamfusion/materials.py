"""Materials: ``diffuse-with-point-light``, ``no-material``, ``neural-radiance``."""

from __future__ import annotations

import random
from typing import Any, Literal, Optional

import attrs
import torch
import torch.nn.functional as F

from studio.api import BaseMaterial, StudioError
from studio_dreamfusion.activations import ValidatesActivations, get_activation
from studio_dreamfusion.networks import defaults
from studio_dreamfusion.networks.configs import NetworkConfigs
from studio_dreamfusion.networks.encodings import (
    build_encoding,
)
from studio_dreamfusion.networks.mlp import build_mlp

Shading = Literal["albedo", "diffuse", "textureless"]


class DiffuseWithPointLight(ValidatesActivations, BaseMaterial):
    """Lambertian shading from a point light plus ambient light, with the reference's sampling of
    shading modes during training (albedo / textureless / diffuse) and an ambient-only warm-up.
    """

    requires_normal = True

    @attrs.define(kw_only=True)
    class Config(BaseMaterial.Config):
        ambient_light_color: tuple[float, float, float] = (0.1, 0.1, 0.1)
        """RGB ambient light added to the Lambertian term."""
        diffuse_light_color: tuple[float, float, float] = (0.9, 0.9, 0.9)
        """RGB colour of the point light."""
        ambient_only_steps: int = 1000
        """Warm-up: before this step the material returns the unshaded albedo (0: no warm-up)."""
        diffuse_prob: float = 0.75
        """After the warm-up, chance that a training call is shaded (else albedo), in [0, 1]."""
        textureless_prob: float = 0.5
        """Chance that a shaded training call is textureless (white albedo), in [0, 1]."""
        albedo_activation: str = "sigmoid"
        """Activation of the first 3 feature channels into the albedo (e.g. ``sigmoid``,
        ``scale_-11_01``)."""
        soft_shading: bool = False
        """Training: one random diffuse/ambient split ``(u, 1 - u)`` per call instead of the
        configured light colours (Magic3D)."""
        ambient_only_on_test: bool = False
        """Render the unshaded albedo in validation and test too."""

    def configure(self) -> None:
        self.register_buffer("ambient_light_color", torch.tensor(self.cfg.ambient_light_color))
        self.register_buffer("diffuse_light_color", torch.tensor(self.cfg.diffuse_light_color))
        self._albedo_activation = get_activation(
            self.cfg.albedo_activation, f"{self.config_path}.albedo_activation"
        )
        self.ambient_only = False
        self.step_shading: Optional[Shading] = None  # drawn by graph_state for the coming step
        # soft shading's diffuse share u of the coming step, drawn by graph_state into a device
        # tensor (a captured step reads it; a new u needs no new graph); None: draw per call
        self.register_buffer("step_soft_split", torch.zeros(()), persistent=False)
        self.soft_split_drawn = False

    def update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        self.ambient_only = global_step < self.cfg.ambient_only_steps
        self.step_shading = None  # a new step: nothing drawn for it yet
        self.soft_split_drawn = False

    def graph_state(self) -> tuple:
        """A captured step's shading is drawn here, before the step, as the training call
        would draw it (the same random stream, at the same point of the step); with
        ``soft_shading`` its light split too, into :attr:`step_soft_split` (not in the key)."""
        self.step_shading = self.choose_shading()
        if self.cfg.soft_shading and self.step_shading != "albedo":
            self.step_soft_split.fill_(random.random())
            self.soft_split_drawn = True
        return (self.step_shading,)

    def choose_shading(self) -> Shading:
        """The reference's per-call choice: P(albedo)=1-diffuse_prob, then textureless vs diffuse
        (in training, the one :meth:`graph_state` drew for this step, if it did)."""
        if self.training:
            if self.step_shading is not None:
                return self.step_shading
            if self.ambient_only or random.random() > self.cfg.diffuse_prob:
                return "albedo"
            return "textureless" if random.random() < self.cfg.textureless_prob else "diffuse"
        if self.ambient_only or self.cfg.ambient_only_on_test:
            return "albedo"
        return "diffuse"

    def forward(
        self,
        features: torch.Tensor,
        positions: Optional[torch.Tensor] = None,
        shading_normal: Optional[torch.Tensor] = None,
        light_positions: Optional[torch.Tensor] = None,
        ambient_ratio: Optional[float] = None,
        shading: Optional[Shading] = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        albedo = self._albedo_activation(features[..., :3])
        shading = shading or self.choose_shading()
        if shading == "albedo":
            return albedo
        if ambient_ratio is not None:
            diffuse_color = torch.full_like(self.diffuse_light_color, 1.0 - ambient_ratio)
            ambient_color = torch.full_like(self.ambient_light_color, ambient_ratio)
        elif self.training and self.cfg.soft_shading:
            diffuse_color = self._soft_split().expand_as(self.diffuse_light_color)
            ambient_color = 1.0 - diffuse_color
        else:
            diffuse_color, ambient_color = self.diffuse_light_color, self.ambient_light_color
        if positions is None or shading_normal is None or light_positions is None:
            raise StudioError(
                "diffuse-with-point-light needs positions, normals and light positions; use a "
                "geometry with normal_type set (e.g. analytic) and a data module with lights."
            )
        light_dirs = F.normalize(light_positions - positions, dim=-1)
        lambert = (shading_normal * light_dirs).sum(-1, keepdim=True).clamp(min=0.0)
        textureless = lambert * diffuse_color + ambient_color
        if shading == "textureless":
            return textureless
        return albedo.clamp(0.0, 1.0) * textureless

    def _soft_split(self) -> torch.Tensor:
        """Soft shading's diffuse share ``u ~ U(0, 1)`` (0-dim, float32): the one
        :meth:`graph_state` drew for this step, else a fresh draw for this call."""
        if not self.soft_split_drawn:
            return torch.tensor(random.random(), device=self.step_soft_split.device)
        return self.step_soft_split

    def export(self, features: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        return {"albedo": self._albedo_activation(features[..., :3]).clamp(0.0, 1.0)}


class NoMaterial(NetworkConfigs, ValidatesActivations, BaseMaterial):
    """Colour = activation(features) (any channel count, e.g. 4 latent channels), optionally after
    an MLP when both ``input_feature_dims`` and ``mlp_network_config`` are set."""

    @attrs.define(kw_only=True)
    class Config(BaseMaterial.Config):
        n_output_dims: int = 3
        """Colour channels (3 for RGB, 4 for Stable Diffusion latents)."""
        color_activation: str = "sigmoid"
        """Activation of the features (or MLP output) into colours (e.g. ``sigmoid``, ``none``)."""
        input_feature_dims: Optional[int] = None
        """Feature channels the MLP takes; with ``mlp_network_config`` adds an MLP (null: none)."""
        mlp_network_config: Optional[dict[str, Any]] = None
        """The MLP from features to colours: ``otype`` (VanillaMLP, FullyFusedMLP, CutlassMLP)
        and its keys; used only with ``input_feature_dims`` (null: none)."""
        requires_normal: bool = False
        """Ask the renderer for normals (this material itself does not use them)."""

    mlp_fields = ("mlp_network_config",)

    def configure(self) -> None:
        cfg = self.cfg
        self.requires_normal = cfg.requires_normal
        self._activation = get_activation(
            cfg.color_activation, f"{self.config_path}.color_activation"
        )
        self.network = None
        if cfg.input_feature_dims is not None and cfg.mlp_network_config is not None:
            self.network = build_mlp(
                cfg.input_feature_dims,
                cfg.n_output_dims,
                cfg.mlp_network_config,
                f"{self.config_path}.mlp_network_config",
            )

    def graph_state(self) -> tuple:
        """None: the colours depend on the features alone."""
        return ()

    def forward(self, features: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.network is not None:
            return self._activation(self.network(features))
        if features.shape[-1] != self.cfg.n_output_dims:
            raise StudioError(
                f"no-material got {features.shape[-1]} feature channels but n_output_dims is "
                f"{self.cfg.n_output_dims}; set system.geometry.n_feature_dims="
                f"{self.cfg.n_output_dims} or configure an MLP (input_feature_dims, mlp_network_config)."
            )
        return self._activation(features)

    def export(self, features: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        color = self(features)
        return {"albedo": color[..., :3].clamp(0.0, 1.0)}


class NeuralRadiance(NetworkConfigs, ValidatesActivations, BaseMaterial):
    """View-dependent colour: ``act(MLP([features, SH((viewdir + 1) / 2)]))``."""

    @attrs.define(kw_only=True)
    class Config(BaseMaterial.Config):
        input_feature_dims: int = 8
        """Feature channels of the geometry fed to the MLP with the encoded view direction."""
        color_activation: str = "sigmoid"
        """Activation of the MLP output into RGB (e.g. ``sigmoid``)."""
        dir_encoding_config: dict[str, Any] = attrs.Factory(defaults.spherical_harmonics)
        """Encoding of the view direction (mapped to ``[0, 1]^3``): ``otype`` (e.g.
        SphericalHarmonics) and its keys."""
        mlp_network_config: dict[str, Any] = attrs.Factory(
            lambda: defaults.mlp("FullyFusedMLP", 16, 2)
        )
        """The colour MLP: ``otype`` (VanillaMLP, FullyFusedMLP, CutlassMLP) and its keys."""

    encoding_fields = {"dir_encoding_config": 3}
    mlp_fields = ("mlp_network_config",)

    def configure(self) -> None:
        cfg = self.cfg
        self.encoding = build_encoding(
            3, cfg.dir_encoding_config, f"{self.config_path}.dir_encoding_config"
        )
        self.network = build_mlp(
            cfg.input_feature_dims + self.encoding.n_output_dims,
            3,
            cfg.mlp_network_config,
            f"{self.config_path}.mlp_network_config",
        )
        self._activation = get_activation(
            cfg.color_activation, f"{self.config_path}.color_activation"
        )

    def forward(
        self, features: torch.Tensor, viewdirs: Optional[torch.Tensor] = None, **kwargs: Any
    ) -> torch.Tensor:
        if viewdirs is None:
            raise StudioError("neural-radiance needs view directions from the renderer.")
        encoded = self.encoding(((viewdirs.reshape(-1, 3) + 1.0) / 2.0).clamp(0.0, 1.0))
        x = torch.cat([features.reshape(-1, features.shape[-1]), encoded], dim=-1)
        return self._activation(self.network(x)).reshape(*features.shape[:-1], 3)
