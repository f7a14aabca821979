"""The prompt processor: a prompt (and its view variants) -> cached text embeddings.

Construction does all the work: resolve ``lib:`` prompts, build the four view prompts, make sure
every needed embedding is in the on-disk cache (:mod:`studio_dreamfusion.prompts.cache`) and load
them onto the device. Calling the processor returns a
:class:`~studio_dreamfusion.prompts.output.PromptProcessorOutput`.

Missing embeddings are encoded on rank 0 only; the other ranks wait at a barrier and then read the
cache (when ``torch.distributed`` is initialised; otherwise every process encodes what it misses,
which the atomic cache writes make safe). The tokenizer and text encoder are loaded only when
something is missing and are deleted (and the CUDA cache emptied) right after encoding.

``spawn`` is accepted for config compatibility with the reference, which encoded in a subprocess
to free the encoder's GPU memory. We encode in-process and free the encoder explicitly instead, so
the flag changes nothing.

An embedded model with a small vocabulary may want its prompts in the exact form it was trained on
(the primitives models: ``"a red cube"`` for ``"A Red Cube."``): when the registered model's
``prompt_check`` (:class:`studio.api.ModelSpec`) returns a string, that string is the prompt
encoded (:func:`model_prompt`); the view prompts are built from it.

Subclasses implement :meth:`PromptProcessor.load_text_encoder` and
:meth:`PromptProcessor.encode_prompts`.
"""

from __future__ import annotations

import functools
import gc
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import attrs
import torch

from studio.api import (
    BaseObject,
    ModelNotAvailableError,
    canonical_prompt,
    main_rank_first,
    prompt_library,
)
from studio_dreamfusion.prompts import cache
from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_dreamfusion.prompts.views import DIRECTION_NAMES, ViewThresholds, build_directions
from studio_dreamfusion.quiet import quiet_loading


def model_prompt(model: str, prompt: str, negative_prompt: str = "") -> str:
    """The prompt to encode for ``model`` (:func:`studio.api.canonical_prompt`); a model that is
    not available is reported when it is loaded, not here."""
    try:
        return canonical_prompt(model, prompt, negative_prompt)
    except ModelNotAvailableError:
        return prompt


@dataclass
class TextEncoder:
    """A loaded tokenizer + text encoder pair (dropped as soon as encoding is done)."""

    tokenizer: Any
    model: Any


class PromptProcessor(BaseObject):
    """Base prompt processor (config of reference §4.6); see the module docstring."""

    config_path: ClassVar[str] = "system.prompt_processor"

    @attrs.define(kw_only=True)
    class Config:
        prompt: str = "a hamburger"
        """The text prompt; ``lib:<keywords>`` picks the one DreamFusion gallery prompt that
        contains all the ``_``-separated keywords."""
        prompt_front: Optional[str] = None
        """Replaces the generated front-view prompt (``<prompt>, front view``); null: generated."""
        prompt_side: Optional[str] = None
        """Replaces the generated side-view prompt (``<prompt>, side view``); null: generated."""
        prompt_back: Optional[str] = None
        """Replaces the generated back-view prompt (``<prompt>, back view``); null: generated."""
        prompt_overhead: Optional[str] = None
        """Replaces the generated overhead-view prompt; null: generated."""
        negative_prompt: str = ""
        """Negative prompt (the unconditional branch of guidance), the same for every view."""
        pretrained_model_name_or_path: str = "stabilityai/stable-diffusion-2-1-base"
        """Model id or local folder whose tokenizer and text encoder embed the prompts."""
        overhead_threshold: float = 60.0
        """Cameras above this elevation (degrees) get the overhead prompt."""
        front_threshold: float = 45.0
        """Cameras within this azimuth (degrees) of the front get the front prompt."""
        back_threshold: float = 45.0
        """Cameras within this azimuth (degrees) of the back get the back prompt."""
        view_dependent_prompt_front: bool = False
        """Put the view first (``front view of <prompt>``) instead of last."""
        use_cache: bool = True
        """Reuse embeddings cached on disk (false: encode every prompt again, refreshing them)."""
        spawn: bool = True
        """Accepted for reference configs; no effect (the encoder is freed in-process)."""
        use_perp_neg: bool = False
        """Perp-Neg: use the other views' prompts as negatives (perpendicular components only)."""
        perp_neg_f_sb: tuple[float, float, float] = (1.0, 0.5, -0.606)
        """Perp-Neg curve ``f(r) = a * exp(-b r) + c`` as ``(a, b, c)``: the side negative's weight
        ``-f(r)`` for back-half cameras."""
        perp_neg_f_fsb: tuple[float, float, float] = (1.0, 0.5, 0.967)
        """Perp-Neg curve ``f(r) = a * exp(-b r) + c`` as ``(a, b, c)``: the front negative's
        weight ``-f(r)`` for back-half cameras."""
        perp_neg_f_fs: tuple[float, float, float] = (4.0, 0.5, -2.426)
        """Perp-Neg curve ``f(r) = a * exp(-b r) + c`` as ``(a, b, c)``: the front negative's
        weight ``-f(r)`` for front-half cameras."""
        perp_neg_f_sf: tuple[float, float, float] = (4.0, 0.5, -2.426)
        """Perp-Neg curve ``f(r) = a * exp(-b r) + c`` as ``(a, b, c)``: the side negative's
        weight ``-f(1 - r)`` for front-half cameras."""

    cfg: Config

    # -- subclass API ---------------------------------------------------------------------------
    def load_text_encoder(self) -> TextEncoder:
        """Load the tokenizer and text encoder of ``cfg.pretrained_model_name_or_path``."""
        raise NotImplementedError

    def encode_prompts(self, encoder: TextEncoder, prompts: list[str]) -> torch.Tensor:
        """Embeddings ``[N, L, D]`` of ``prompts`` (no gradients)."""
        raise NotImplementedError

    # -- construction ---------------------------------------------------------------------------
    def configure(self) -> None:
        cfg = self.cfg
        self.prompt = self._resolve_prompt(cfg.prompt)
        manual = {name: getattr(cfg, f"prompt_{name}") for name in DIRECTION_NAMES}
        self.directions = build_directions(
            self.prompt,
            cfg.negative_prompt,
            ViewThresholds(
                front=cfg.front_threshold, back=cfg.back_threshold, overhead=cfg.overhead_threshold
            ),
            front_style=cfg.view_dependent_prompt_front,
            manual=manual,
        )
        self.direction2idx = {d.name: i for i, d in enumerate(self.directions)}
        self.prompts_vd = [d.prompt for d in self.directions]
        self.negative_prompts_vd = [d.negative_prompt for d in self.directions]
        wanted = [self.prompt, cfg.negative_prompt, *self.prompts_vd, *self.negative_prompts_vd]
        self.embeddings = self.prepare_embeddings(list(dict.fromkeys(wanted)))

    def _resolve_prompt(self, prompt: str) -> str:
        if prompt_library.is_library_prompt(prompt):
            prompt = prompt_library.lookup(prompt, f"{self.config_path}.prompt")
        return model_prompt(
            self.cfg.pretrained_model_name_or_path, prompt, self.cfg.negative_prompt
        )

    @functools.cached_property
    def model_id(self) -> str:
        """The model id the cache is keyed by (:func:`~studio_dreamfusion.prompts.cache.model_cache_id`)."""
        return cache.model_cache_id(self.cfg.pretrained_model_name_or_path)

    def prepare_embeddings(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Every prompt's embedding on ``self.device``, encoding (rank 0) what the cache lacks."""
        with main_rank_first() as is_main:
            if self.cfg.use_cache:
                missing = [p for p in prompts if not cache.cache_path(self.model_id, p).is_file()]
            else:
                missing = list(prompts) if is_main else []
            if missing:
                self._encode_to_cache(missing)
        return {
            p: cache.load_embedding(cache.cache_path(self.model_id, p), self.device)
            for p in prompts
        }

    def _encode_to_cache(self, prompts: list[str]) -> None:
        with quiet_loading():
            encoder = self.load_text_encoder()
        try:
            with torch.no_grad():
                embeddings = self.encode_prompts(encoder, prompts)
            for prompt, embedding in zip(prompts, embeddings, strict=True):
                cache.save_embedding(cache.cache_path(self.model_id, prompt), embedding.float())
        finally:
            del encoder
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def graph_state(self) -> tuple:
        """Not called in a step: its embeddings are computed once, before training."""
        return ()

    def graph_blocker(self) -> Optional[str]:
        if self.cfg.use_perp_neg:
            return f"{self.config_path}.use_perp_neg has not been verified under capture"
        return super().graph_blocker()

    # -- output ---------------------------------------------------------------------------------
    def __call__(self) -> PromptProcessorOutput:
        cfg = self.cfg
        emb = self.embeddings
        return PromptProcessorOutput(
            text_embeddings=emb[self.prompt],
            uncond_text_embeddings=emb[cfg.negative_prompt],
            text_embeddings_vd=torch.stack([emb[p] for p in self.prompts_vd]),
            uncond_text_embeddings_vd=torch.stack([emb[p] for p in self.negative_prompts_vd]),
            directions=self.directions,
            direction2idx=self.direction2idx,
            prompt=self.prompt,
            prompts_vd=self.prompts_vd,
            use_perp_neg=cfg.use_perp_neg,
            perp_neg_f_sb=cfg.perp_neg_f_sb,
            perp_neg_f_fsb=cfg.perp_neg_f_fsb,
            perp_neg_f_fs=cfg.perp_neg_f_fs,
            perp_neg_f_sf=cfg.perp_neg_f_sf,
            negative_prompt=cfg.negative_prompt,
        )
