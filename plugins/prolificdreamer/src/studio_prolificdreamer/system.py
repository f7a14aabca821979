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

Particles (``num_particles: K``, the paper's method; threestudio trains one). K scenes, each
from its own seed, are rendered at the step's cameras and given to the guidance as one batch of
``K * B`` images, so the one LoRA learns the distribution of all particles' renders. The
score-distillation losses (``loss_vsd``, or ``loss_sds`` of the geometry stage) are means over
that batch; they are multiplied by K, so that the total is the sum of each particle's own loss
(each particle gets the gradient a run of its own would). ``loss_lora`` trains the shared LoRA
and stays a mean. The regularisers are summed over particles::

    loss = sum_X lambda_X * K^[X != lora] * loss_X(guidance(stack_k render_k))
         + sum_k regularisers(render_k)

The logged ``loss_vsd`` is that sum (K times a one-particle run's). Two things act on all
particles at once: ``trainer.gradient_clip_val`` clips the norm of every particle's and the
LoRA's gradients together, and a step skipped for a non-finite loss is skipped for all.

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

#: Guidance losses that train the shared guidance (the LoRA), not the particles: not multiplied
#: by the number of particles.
SHARED_TERMS = ("loss_lora",)


def repeat_batch(batch: dict[str, Any], times: int) -> dict[str, Any]:
    """``batch`` with every tensor of the batch's size (``c2w``'s first dimension) repeated
    ``times`` along dimension 0 (copy ``k`` after copy ``k - 1``: the order of stacked
    particles); other entries are kept."""
    if times == 1:
        return batch
    size = batch["c2w"].shape[0]
    return {
        key: torch.cat([value] * times)
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size
        else value
        for key, value in batch.items()
    }


class ProlificDreamerSystem(DreamFusionSystem):
    supports_particles = True

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
        count = self.cfg.num_particles
        outs = []
        for particle in self.particle_indices():
            with self.use_particle(particle):
                outs.append(self.render(batch))
        key = "comp_normal" if self.cfg.stage == "geometry" else "comp_rgb"
        images = outs[0][key] if count == 1 else torch.cat([out[key] for out in outs])
        guidance_out = self.guidance(
            images, self.prompt_utils, **repeat_batch(batch, count), rgb_as_latents=False
        )
        if count > 1:
            guidance_out = {
                name: value * count
                if name.startswith("loss_") and name not in SHARED_TERMS
                else value
                for name, value in guidance_out.items()
            }
        loss, logged = weighted_guidance_losses(guidance_out, self.loss_weight, self.cfg.loss)
        for out in outs:
            terms, values = self.scene_regularisers(out)
            for term in terms:
                loss = loss + term
            for name, value in values.items():
                logged[name] = logged[name] + value if name in logged else value
        return {"loss": loss, **logged}

    def scene_regularisers(
        self, out: dict[str, Any]
    ) -> tuple[list[torch.Tensor | float], dict[str, torch.Tensor]]:
        """One particle's regularisers: ``(weighted terms to add to the loss in order, detached
        values to log as loss_<name>)``; the coarse stage's scene terms, the geometry stage's
        mesh terms (:func:`weighted_mesh_regularisers`), none for texture."""
        if self.cfg.stage == "coarse":
            values = self.regularisers(out)
            terms = [v * self.C(self.cfg.loss[f"lambda_{n}"]) for n, v in values.items()]
            return terms, {f"loss_{n}": v.detach() for n, v in values.items()}
        if self.cfg.stage == "geometry":
            total, logged = weighted_mesh_regularisers(out["mesh"], self.C, self.cfg.loss)
            return [total], logged
        return [], {}

    def validation_step(self, batch: dict[str, Any], index: int) -> None:
        columns = self.eval_columns(batch)
        if self.cfg.visualize_samples and self.guidance is not None:
            columns += self.sample_columns(batch, index)
        self.saver.image_grid(self.validation_image_name(index), columns)

    def sample_columns(self, batch: dict[str, Any], index: int) -> list[Any]:
        """The guidance's samples for validation view ``index`` (pretrained | LoRA), drawn once
        per view and step and shown in every particle's grid."""
        key = (self.global_step, index)
        cached = getattr(self, "_samples", None)
        if cached is None or cached[0] != key:
            samples = self.guidance.sample(self.prompt_utils, **batch)
            cached = (key, [rgb(samples["pretrained"][0]), rgb(samples["lora"][0])])
            self._samples = cached
        return list(cached[1])

    def eval_columns(self, batch: dict[str, Any]) -> list[Any]:
        """Geometry stage: normal | opacity (it has no colour); otherwise rgb | normal |
        opacity."""
        if self.cfg.stage != "geometry":
            return super().eval_columns(batch)
        out = self.render(batch)
        return [rgb(out["comp_normal"][0]), grayscale(out["opacity"][0])]
