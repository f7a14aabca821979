"""The Magic3D system: a coarse NeRF stage like DreamFusion's, then a mesh refinement stage.

Reference §5.2. With ``refinement: false`` (the coarse stage) a training step is DreamFusion's:
render the NeRF, SDS (with whatever weighting the guidance config names), plus the orientation,
sparsity and opacity regularisers. With ``refinement: true`` the geometry is an explicit mesh
(``tetrahedra-sdf-grid`` rasterized by ``nvdiff-rasterizer``) and the step is the guidance's losses
plus two mesh regularisers on the rendered mesh (:mod:`studio_magic3d.losses`):

    loss = sum_X lambda_X * loss_X(guidance)
         + lambda_normal_consistency   * normal_consistency(mesh)
         + lambda_laplacian_smoothness * laplacian_smoothness(mesh)

The NeRF regularisers have nothing to act on in refinement (a mesh has no per-sample weights), so
their lambdas are refused there, as a misspelt term would be.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import torch

from studio_dreamfusion.system import REGULARISERS, DreamFusionSystem, weighted_guidance_losses
from studio_magic3d.losses import MESH_REGULARISERS, weighted_mesh_regularisers


class Magic3DSystem(DreamFusionSystem):
    @attrs.define(kw_only=True)
    class Config(DreamFusionSystem.Config):
        refinement: bool = False
        """The mesh refinement stage: guidance plus the mesh regularisers (normal consistency,
        Laplacian smoothness) on the rasterized mesh; false: the coarse NeRF stage
        (DreamFusion's losses)."""

    @classmethod
    def loss_terms(cls, cfg: Any) -> Optional[set[str]]:
        """Coarse: DreamFusion's terms. Refinement: the mesh regularisers plus the guidance's."""
        terms = super().loss_terms(cfg)
        if not cfg.refinement or terms is None:
            return terms
        return (terms - set(REGULARISERS)) | set(MESH_REGULARISERS)

    #: the coarse stage's step is DreamFusion's: no host state of its own
    graph_state = DreamFusionSystem.graph_state

    def graph_blocker(self) -> Optional[str]:
        if self.cfg.refinement:
            return (
                "system.refinement is true: the mesh marching tetrahedra extracts has a new size "
                "every step, so the refinement step runs eagerly"
            )
        return super().graph_blocker()

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if not self.cfg.refinement:
            return super().training_step(batch)
        out = self.renderer(**batch)
        guidance_out = self.guidance(
            out["comp_rgb"], self.prompt_utils, **batch, rgb_as_latents=False
        )
        loss, logged = weighted_guidance_losses(guidance_out, self.loss_weight, self.cfg.loss)
        regularisers, more = weighted_mesh_regularisers(out["mesh"], self.C, self.cfg.loss)
        return {"loss": loss + regularisers, **logged, **more}
