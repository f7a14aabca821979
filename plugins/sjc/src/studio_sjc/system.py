"""The Score Jacobian Chaining system: a voxel grid of SD latents trained by the SJC score.

Reference §5.3. One training step renders the batch's cameras as 4-channel Stable Diffusion
latents (``comp_rgb`` has 4 channels: ``no-material`` with 4 outputs and a 4-channel background),
hands them to the guidance as latents (``rgb_as_latents``; the ``stable-diffusion`` guidance with
``use_sjc``), and adds (:mod:`studio_sjc.losses`)::

    loss = lambda_sds * loss_sds + lambda_emptiness * emptiness(weights, emptiness_scale)
         + lambda_depth * center_depth(depth, opacity, center_ratio)     (when lambda_depth > 0)

Validation and test decode the latent render through the model's VAE: with
``subpixel_rendering`` the latent map is resized to twice the UNet's latent size before
decoding (finer detail than the latent grid holds), and the decoded image is shown at the
render's size. Grid columns: decoded RGB | opacity | depth (``log(1 + d) / log(11)``, spectral
colour map). The decoded RGB is the first column, so ``studio eval`` scores it. Only the VAE is
loaded for ``studio test`` (lazily); during training the guidance's VAE is reused.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import attrs
import torch

from studio.api import Range
from studio_dreamfusion.latent_decoder import DecodesLatents
from studio_dreamfusion.system import DreamFusionSystem, weighted_guidance_losses
from studio_sjc.losses import center_depth_loss, emptiness_loss

#: SJC's scene losses (``system.loss.lambda_<name>``).
SCENE_LOSSES = ("emptiness", "depth")


class SJCSystem(DecodesLatents, DreamFusionSystem):
    @attrs.define(kw_only=True)
    class Config(DreamFusionSystem.Config):
        subpixel_rendering: bool = True
        """Validation/test: decode the latent render at twice the UNet's latent size (a 2x
        finer image, shown at the render's size); false: at the UNet's latent size."""
        emptiness_scale: Annotated[float, Range(low=0.0)] = 10.0
        """``scale`` of the emptiness loss ``mean(log(1 + scale * w))`` (the reference's
        ``system.loss.emptiness_scale``: ``system.loss`` holds only ``lambda_*`` here)."""
        center_ratio: Annotated[float, Range(0.0, 1.0)] = 0.78125
        """Side of the centre-depth loss's central box as a fraction of the image (50/64)."""

    #: Besides the guidance's terms; DreamFusion's NeRF regularisers are not part of SJC.
    scene_terms = SCENE_LOSSES

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.renderer(**batch)
        guidance_out = self.guidance(
            out["comp_rgb"], self.prompt_utils, **batch, rgb_as_latents=True
        )
        loss, logged = weighted_guidance_losses(guidance_out, self.loss_weight, self.cfg.loss)
        for name, value in self.scene_losses(out).items():
            loss = loss + value * self.C(self.cfg.loss[f"lambda_{name}"])
            logged[f"loss_{name}"] = value.detach()
        return {"loss": loss, **logged}

    def scene_losses(self, out: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Emptiness and centre depth, each when its lambda is positive at this step."""
        lambdas = self.cfg.loss
        losses: dict[str, torch.Tensor] = {}
        if self.C(lambdas.get("lambda_emptiness", 0.0)) > 0:
            losses["emptiness"] = emptiness_loss(out["weights"], self.cfg.emptiness_scale)
        if self.C(lambdas.get("lambda_depth", 0.0)) > 0:
            losses["depth"] = center_depth_loss(out["depth"], out["opacity"], self.cfg.center_ratio)
        return losses

    # -- evaluation ----------------------------------------------------------------------------
    def eval_columns(self, batch: dict[str, Any]) -> list[Any]:
        """decoded RGB | opacity | depth (``log(1 + d) / log(11)``, spectral)."""
        from studio.api import grayscale, rgb

        out = self.renderer(**batch)
        depth = torch.log1p(out["depth"][0].clamp(min=0.0)) / math.log(11.0)
        return [
            rgb(self.decode(out["comp_rgb"][:1], self.cfg.subpixel_rendering)[0]),
            grayscale(out["opacity"][0]),
            grayscale(depth, (0.0, 1.0), cmap="spectral"),
        ]
