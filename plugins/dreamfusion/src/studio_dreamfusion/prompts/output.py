"""What a prompt processor hands the guidance: every embedding plus the rules to pick per camera.

Conventions (the reference's):

* :meth:`PromptProcessorOutput.get_text_embeddings` returns ``cat([cond (B), uncond (B)])`` --
  conditional FIRST, unlike diffusers' pipelines.
* :meth:`PromptProcessorOutput.get_text_embeddings_perp_neg` returns ``[pos (B), uncond (B),
  neg (2B)]`` where the negatives are sample-major (``neg[2i]``, ``neg[2i + 1]`` belong to sample
  ``i``), plus the negatives' weights ``[B, 2]``.
* Embeddings are selected per camera, never interpolated (except perp-neg's positive prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.api import ConfigError
from studio_dreamfusion.prompts.views import ViewDirection, direction_indices, shift_azimuth_deg

#: ``(a, b, c)`` of the shifted exponential ``a * exp(-b * r) + c`` (perp-neg weight curves).
DecayParams = tuple[float, float, float]


def shifted_exponential_decay(params: DecayParams, r: torch.Tensor) -> torch.Tensor:
    """``a * exp(-b * r) + c`` for ``params = (a, b, c)``."""
    a, b, c = params
    return a * torch.exp(-b * r) + c


@dataclass
class PromptProcessorOutput:
    """Text embeddings of one prompt and its view variants (``L`` tokens of width ``D``).

    ``text_embeddings``/``uncond_text_embeddings``: ``[L, D]`` (plain prompt / negative prompt);
    ``text_embeddings_vd``/``uncond_text_embeddings_vd``: ``[4, L, D]`` in the order of
    ``directions`` (side, front, back, overhead).
    """

    text_embeddings: torch.Tensor
    uncond_text_embeddings: torch.Tensor
    text_embeddings_vd: torch.Tensor
    uncond_text_embeddings_vd: torch.Tensor
    directions: list[ViewDirection]
    direction2idx: dict[str, int]
    prompt: str
    prompts_vd: list[str]
    use_perp_neg: bool = False
    perp_neg_f_sb: DecayParams = (1.0, 0.5, -0.606)
    perp_neg_f_fsb: DecayParams = (1.0, 0.5, 0.967)
    perp_neg_f_fs: DecayParams = (4.0, 0.5, -2.426)
    perp_neg_f_sf: DecayParams = (4.0, 0.5, -2.426)
    negative_prompt: str = ""

    def direction_indices(
        self, elevation: torch.Tensor, azimuth: torch.Tensor, camera_distances: torch.Tensor
    ) -> torch.Tensor:
        """Per-camera view index (long ``[B]``, on the embeddings' device)."""
        device = self.text_embeddings_vd.device
        return direction_indices(
            self.directions,
            elevation.to(device),
            azimuth.to(device),
            camera_distances.to(device),
        )

    def get_text_embeddings(
        self,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        view_dependent_prompting: bool = True,
    ) -> torch.Tensor:
        """``cat([cond, uncond])`` of shape ``[2B, L, D]``: each camera's view prompt (or the
        plain prompt when ``view_dependent_prompting`` is False) and its negative prompt."""
        batch = elevation.shape[0]
        if view_dependent_prompting:
            index = self.direction_indices(elevation, azimuth, camera_distances)
            cond = self.text_embeddings_vd[index]
            uncond = self.uncond_text_embeddings_vd[index]
        else:
            cond = self.text_embeddings.unsqueeze(0).expand(batch, -1, -1)
            uncond = self.uncond_text_embeddings.unsqueeze(0).expand(batch, -1, -1)
        return torch.cat([cond, uncond], dim=0)

    def get_text_embeddings_perp_neg(
        self,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        view_dependent_prompting: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Perp-Neg embeddings ``[4B, L, D]`` laid out ``[pos B, uncond B, neg 2B]`` and the
        negatives' weights ``[B, 2]``.

        Per camera (azimuth wrapped to [-180, 180), ``a = |azimuth|``):

        * overhead view: positive = overhead prompt; both negatives = the negative prompt with
          weight 0;
        * ``a < 90``: ``r = 1 - a/90``, positive = ``r*front + (1-r)*side``, negatives
          ``[front, side]`` with weights ``[-f_fs(r), -f_sf(1-r)]``;
        * ``a >= 90``: ``r = 2 - a/90``, positive = ``r*side + (1-r)*back``, negatives
          ``[side, front]`` with weights ``[-f_sb(r), -f_fsb(r)]``.
        """
        if not view_dependent_prompting:
            raise ConfigError(
                "Perp-Neg (system.prompt_processor.use_perp_neg=true) needs view-dependent "
                "prompting, but system.guidance.view_dependent_prompting is false; set it to true "
                "or turn use_perp_neg off."
            )
        vd = self.text_embeddings_vd
        idx = self.direction2idx
        side, front, back = vd[idx["side"]], vd[idx["front"]], vd[idx["back"]]
        overhead_emb = vd[idx["overhead"]]

        index = self.direction_indices(elevation, azimuth, camera_distances)
        uncond = self.uncond_text_embeddings_vd[index]
        azi = shift_azimuth_deg(azimuth.to(vd.device, vd.dtype)).abs()
        overhead = index == idx["overhead"]
        front_half = (azi < 90.0) & ~overhead
        back_half = (azi >= 90.0) & ~overhead

        r_front = 1.0 - azi / 90.0
        r_back = 2.0 - azi / 90.0
        r = torch.where(front_half, r_front, r_back)
        rr = r.view(-1, 1, 1)
        fh, oh = front_half.view(-1, 1, 1), overhead.view(-1, 1, 1)

        pos = torch.where(fh, rr * front + (1 - rr) * side, rr * side + (1 - rr) * back)
        pos = torch.where(oh, overhead_emb.expand_as(pos), pos)
        neg_a = torch.where(fh, front, side)
        neg_b = torch.where(fh, side, front)
        neg_a = torch.where(oh, uncond, neg_a)
        neg_b = torch.where(oh, uncond, neg_b)
        negatives = torch.stack([neg_a, neg_b], dim=1).flatten(0, 1)  # sample-major [2B, L, D]

        zero = torch.zeros_like(r)
        w_a = torch.where(
            front_half,
            -shifted_exponential_decay(self.perp_neg_f_fs, r),
            torch.where(back_half, -shifted_exponential_decay(self.perp_neg_f_sb, r), zero),
        )
        w_b = torch.where(
            front_half,
            -shifted_exponential_decay(self.perp_neg_f_sf, 1 - r),
            torch.where(back_half, -shifted_exponential_decay(self.perp_neg_f_fsb, r), zero),
        )
        weights = torch.stack([w_a, w_b], dim=1)
        return torch.cat([pos, uncond, negatives], dim=0), weights
