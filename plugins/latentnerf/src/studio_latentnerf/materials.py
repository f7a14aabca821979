"""``sd-latent-adapter``: RGB from 4 latent feature channels by a learnable linear map.

Latent-NeRF's refinement stage keeps the latent stage's geometry and its 4 feature channels and
learns to show them as colours (reference §4.3)::

    rgb = clamp((features @ A + 1) / 2, 0, 1)        A: [4, 3], learnable

``A`` starts at the model family's known latent-to-RGB approximation: Stable Diffusion's by
default (:data:`SD_LATENT_TO_RGB`), or, for another VAE, a matrix fitted by least squares on that
VAE's own decodes (:func:`studio_latentnerf.latent_rgb.fit_latent_to_rgb`).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from studio.api import BaseMaterial, ConfigError, StudioError

#: Stable Diffusion's latent-to-RGB approximation (rows: latent channels; columns: R, G, B).
SD_LATENT_TO_RGB: tuple[tuple[float, float, float], ...] = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)


def latent_to_rgb(features: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``clamp((features @ matrix + 1) / 2, 0, 1)`` for ``features [..., 4]``, ``matrix [4, 3]``."""
    return ((features @ matrix + 1.0) / 2.0).clamp(0.0, 1.0)


class SDLatentAdapter(BaseMaterial):
    @attrs.define(kw_only=True)
    class Config(BaseMaterial.Config):
        matrix: tuple[tuple[float, float, float], ...] = SD_LATENT_TO_RGB
        """The initial 4x3 map from latent channels to RGB in [-1, 1] (rows: channels);
        Stable Diffusion's approximation by default."""

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        shape = (len(cfg.matrix), *{len(row) for row in cfg.matrix})
        if shape != (4, 3):
            raise ConfigError(
                f"{path}.matrix has {len(cfg.matrix)} rows of lengths "
                f"{sorted({len(row) for row in cfg.matrix})}; it maps 4 latent channels to RGB, "
                "so give 4 rows of 3 numbers (or leave it out for Stable Diffusion's)."
            )

    def configure(self) -> None:
        self.requires_normal = False
        self.matrix = torch.nn.Parameter(torch.tensor(self.cfg.matrix, dtype=torch.float32))

    def graph_state(self) -> tuple:
        """None: a fixed linear map of the features."""
        return ()

    def forward(self, features: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if features.shape[-1] != 4:
            raise StudioError(
                f"sd-latent-adapter maps 4 latent channels to RGB but got {features.shape[-1]}; "
                "set system.geometry.n_feature_dims=4 (a Latent-NeRF latent stage's geometry)."
            )
        return latent_to_rgb(features, self.matrix)

    def export(self, features: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        return {"albedo": self(features)}
