"""The ProlificDreamer system: a coarse NeRF, then a mesh's geometry, then its texture.

Reference §5.6 (the three-stage form). ``system.stage`` picks what a training step does:

* ``coarse``: DreamFusion's step (render the NeRF, the guidance's losses on ``comp_rgb``, plus the
  orientation, sparsity, opacity-entropy and z-variance regularisers); with
  ``stable-diffusion-vsd`` the guidance's losses are ``loss_vsd`` and ``loss_lora``;
* ``geometry``: the mesh (DMTet converted from the coarse NeRF) rasterized without colour, its
  normal map (in ``[0, 1]``) to the guidance as an RGB image (SDS in the reference presets), plus
  normal consistency and Laplacian smoothness::

      loss = sum_X lambda_X * loss_X(guidance(comp_normal))
           + lambda_normal_consistency * nc(mesh) + lambda_laplacian_smoothness * lap(mesh)

* ``texture``: the fixed mesh rendered with colour, the guidance's losses on ``comp_rgb`` and
  nothing else.

The guidance is always given images, never latents (``rgb_as_latents=False``). With
``visualize_samples`` each validation grid ends with what the guidance's two models draw for that
view (``guidance.sample``: the pretrained model, then the LoRA model; 25 DPM-Solver steps), which
shows what the LoRA has learned of the current renders.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs
import torch

from studio.api import ConfigError, grayscale, load_component, rgb
from studio_dreamfusion.system import REGULARISERS, DreamFusionSystem, weighted_guidance_losses
from studio_magic3d.losses import MESH_REGULARISERS, weighted_mesh_regularisers

Stage = Literal["coarse", "geometry", "texture"]


class ProlificDreamerSystem(DreamFusionSystem):
    @attrs.define(kw_only=True)
    class Config(DreamFusionSystem.Config):
        stage: Stage = "coarse"
        """``coarse`` (NeRF, DreamFusion's regularisers), ``geometry`` (mesh normals to the
        guidance, mesh regularisers) or ``texture`` (the fixed mesh's colours)."""
        visualize_samples: bool = False
        """Append the guidance's samples for the view (pretrained | LoRA) to each validation
        grid; needs a guidance with ``sample`` (``stable-diffusion-vsd``)."""

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        if not cfg.visualize_samples or not cfg.guidance_type:
            return
        guidance = load_component("guidance", cfg.guidance_type)
        if not callable(getattr(guidance, "sample", None)):
            raise ConfigError(
                f"{path}.visualize_samples=true: the guidance {cfg.guidance_type!r} draws no "
                "samples (stable-diffusion-vsd does); set visualize_samples to false for this "
                "stage."
            )

    @classmethod
    def loss_terms(cls, cfg: Any) -> Optional[set[str]]:
        """Coarse: DreamFusion's terms; geometry: the guidance's and the mesh regularisers;
        texture: the guidance's only. None when the guidance declares none (any accepted)."""
        terms = super().loss_terms(cfg)
        if cfg.stage == "coarse" or terms is None:
            return terms
        guidance_terms = terms - set(REGULARISERS)
        if cfg.stage == "geometry":
            return guidance_terms | set(MESH_REGULARISERS)
        return guidance_terms

    def render(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The renderer's output for ``batch``; the geometry stage renders no colour."""
        if self.cfg.stage == "geometry":
            return self.renderer(**batch, render_rgb=False)
        return self.renderer(**batch)

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.cfg.stage == "coarse":
            return super().training_step(batch)
        out = self.render(batch)
        image = out["comp_normal"] if self.cfg.stage == "geometry" else out["comp_rgb"]
        guidance_out = self.guidance(image, self.prompt_utils, **batch, rgb_as_latents=False)
        loss, logged = weighted_guidance_losses(guidance_out, self.C, self.cfg.loss)
        if self.cfg.stage == "geometry":
            regularisers, more = weighted_mesh_regularisers(out["mesh"], self.C, self.cfg.loss)
            loss, logged = loss + regularisers, {**logged, **more}
        return {"loss": loss, **logged}

    def validation_step(self, batch: dict[str, Any], index: int) -> None:
        columns = self.eval_columns(batch)
        if self.cfg.visualize_samples and self.guidance is not None:
            samples = self.guidance.sample(self.prompt_utils, **batch)
            columns += [rgb(samples["pretrained"][0]), rgb(samples["lora"][0])]
        self.saver.image_grid(self.validation_image_name(index), columns)

    def eval_columns(self, batch: dict[str, Any]) -> list[Any]:
        """Geometry stage: normal | opacity (it has no colour); otherwise rgb | normal |
        opacity."""
        if self.cfg.stage != "geometry":
            return super().eval_columns(batch)
        out = self.render(batch)
        return [rgb(out["comp_normal"][0]), grayscale(out["opacity"][0])]
