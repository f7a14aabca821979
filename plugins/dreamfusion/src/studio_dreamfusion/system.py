"""The DreamFusion system: render a view, distil the diffusion model's score into it, regularise.

One training step (reference §5.1): render the batch's cameras, ask the guidance for its losses on
the rendered ``comp_rgb`` (``loss_sds`` for SDS), weight every guidance loss ``loss_X`` by the
schedulable ``system.loss.lambda_X``, and add the orientation, sparsity, opacity-entropy and
(when configured) z-variance regularisers. The prompt processor and guidance are built in
``on_fit_start`` only, so ``studio test`` and ``studio export`` never load a diffusion model.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import attrs
import torch

from studio.api import BaseLift3DSystem, ConfigError, StudioError, load_component
from studio_dreamfusion.losses import (
    opaque_loss,
    orientation_loss,
    sparsity_loss,
    z_variance_loss,
)


def weighted_guidance_losses(
    guidance_out: dict[str, Any], weight_of: Any, loss_config: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_X lambda_X * loss_X`` over the guidance's ``loss_*`` entries, plus what to log;
    ``weight_of("lambda_X")`` gives the weight at the current step (``system.loss_weight``).

    A guidance loss without a ``system.loss.lambda_X`` entry is a configuration error (the
    reference's rule): silently dropping a loss would train something else than the user asked.
    """
    total: torch.Tensor | float = 0.0
    logged: dict[str, torch.Tensor] = {}
    for name, value in guidance_out.items():
        if not name.startswith("loss_"):
            if isinstance(value, (torch.Tensor, float, int)):
                logged[f"guidance/{name}"] = torch.as_tensor(value).detach().float()
            continue
        key = f"lambda_{name[len('loss_') :]}"
        if key not in loss_config:
            raise ConfigError(
                f"The guidance returned {name!r} but system.loss has no {key!r}; add it (e.g. "
                f"`system.loss.{key}=1.0`, or 0 to switch the term off)."
            )
        total = total + value * weight_of(key)
        logged[name] = value.detach()
    return torch.as_tensor(total) if isinstance(total, float) else total, logged


#: The 3D regularisers DreamFusion's system weighs (``system.loss.lambda_<name>``).
REGULARISERS = ("orient", "sparsity", "opaque", "z_variance")


class DreamFusionSystem(BaseLift3DSystem):
    @attrs.define(kw_only=True)
    class Config(BaseLift3DSystem.Config):
        pass

    #: The system's own loss terms besides the guidance's (a subclass may name others).
    scene_terms: ClassVar[tuple[str, ...]] = REGULARISERS

    @classmethod
    def loss_terms(cls, cfg: Any) -> Optional[set[str]]:
        """:attr:`scene_terms` plus the guidance class's ``loss_terms`` (None when it declares
        none: then any ``lambda_*`` is accepted)."""
        if not cfg.guidance_type:
            return set(cls.scene_terms)
        try:
            guidance = load_component("guidance", cfg.guidance_type)
        except StudioError:
            return None
        terms = getattr(guidance, "loss_terms", None)
        return None if terms is None else set(cls.scene_terms) | set(terms)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.guidance is None or self.prompt_processor is None:
            raise ConfigError(
                "DreamFusion trains from a guidance model: set system.guidance_type and "
                "system.prompt_processor_type (the dreamfusion-sd / dreamfusion-if presets do)."
            )
        self.prompt_utils = self.prompt_processor()

    def regularisers(self, out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The 3D regularisers whose lambdas are positive (unset lambdas count as 0)."""
        losses: dict[str, torch.Tensor] = {}
        cfg = self.cfg.loss
        if "lambda_orient" in cfg and self.C(cfg["lambda_orient"]) > 0:
            if "normal" not in out:
                raise ConfigError(
                    "system.loss.lambda_orient > 0 needs normals: set system.geometry.normal_type "
                    "(e.g. analytic) or set lambda_orient to 0."
                )
            losses["orient"] = orientation_loss(
                out["weights"], out["normal"], out["t_dirs"], out["opacity"]
            )
        if "lambda_sparsity" in cfg and self.C(cfg["lambda_sparsity"]) > 0:
            losses["sparsity"] = sparsity_loss(out["opacity"])
        if "lambda_opaque" in cfg and self.C(cfg["lambda_opaque"]) > 0:
            losses["opaque"] = opaque_loss(out["opacity"])
        if "lambda_z_variance" in cfg and self.C(cfg["lambda_z_variance"]) > 0:
            losses["z_variance"] = z_variance_loss(out["z_variance"], out["opacity"])
        return losses

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.renderer(**batch)
        guidance_out = self.guidance(
            out["comp_rgb"], self.prompt_utils, **batch, rgb_as_latents=False
        )
        loss, logged = weighted_guidance_losses(guidance_out, self.loss_weight, self.cfg.loss)
        for name, value in self.regularisers(out).items():
            loss = loss + value * self.loss_weight(f"lambda_{name}")
            logged[f"loss_{name}"] = value.detach()
        return {"loss": loss, **logged}

    def graph_state(self) -> tuple:
        """None of its own: which loss terms are on is part of every graph's key, their weights
        are device tensors (:meth:`~studio.api.BaseSystem.loss_weight`)."""
        return ()
