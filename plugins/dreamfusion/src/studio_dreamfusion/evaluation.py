"""CLIP R-precision: the ``clip-r-precision`` evaluator of ``studio eval RUN_DIR``.

DreamFusion's metric: every rendered rgb test frame is embedded with a CLIP image encoder and
compared (cosine similarity) with the CLIP text embeddings of the candidate prompts, which are the
DreamFusion prompt library shipped in studio-core (:func:`studio.prompt_library.library`) plus the
run's prompt when the library lacks it. R-precision is the fraction of frames whose most similar
candidate is the run's prompt.

The CLIP model is ``$STUDIO_CLIP_MODEL`` (default :data:`DEFAULT_MODEL`): a hub id or a folder
saved with ``save_pretrained`` (``CLIPModel`` weights and config plus ``CLIPTokenizer`` files).
It is resolved locally only (a folder, or the Hugging Face cache; never downloaded here); when it
is not there the result is ``{"applicable": False, "reason": ...}`` naming the model and
``studio models pull``, not an error. Images are preprocessed with torch ops as the folder's
``preprocessor_config.json`` says (resize, centre crop, normalise), else with CLIP's standard
mean/std at the vision config's ``image_size``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from studio.api import StudioError, one_line
from studio_dreamfusion.quiet import quiet_loading

MODEL_VARIABLE = "STUDIO_CLIP_MODEL"
DEFAULT_MODEL = "openai/clip-vit-base-patch32"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BATCH = 64


def model_name() -> str:
    """The CLIP model to use: ``$STUDIO_CLIP_MODEL``, else :data:`DEFAULT_MODEL`."""
    return os.environ.get(MODEL_VARIABLE, "").strip() or DEFAULT_MODEL


def candidate_prompts(prompt: str) -> tuple[list[str], int]:
    """``(candidates, index of prompt)``: the DreamFusion library, plus ``prompt`` if absent."""
    from studio.api import prompt_library

    candidates = list(prompt_library.library())
    if prompt not in candidates:
        candidates.append(prompt)
    return candidates, candidates.index(prompt)


def unavailable_reason(name: str) -> str:
    """One line saying the CLIP model ``name`` is not here and how to get it."""
    from studio.api import is_hub_id

    if is_hub_id(name) and not Path(name).expanduser().exists():
        return (
            f"CLIP model '{name}' ({MODEL_VARIABLE}) is not available locally (eval never "
            f"downloads): run `studio models pull {name}` (on a machine with network, then copy "
            f"the cache), or set {MODEL_VARIABLE} to a local CLIP folder."
        )
    return (
        f"CLIP model '{name}' ({MODEL_VARIABLE}) is no local folder: set {MODEL_VARIABLE} to a "
        f"folder holding a CLIPModel and its tokenizer, or unset it and run "
        f"`studio models pull {DEFAULT_MODEL}`."
    )


def _pair(value: Any) -> tuple[int, int]:
    """``(height, width)`` from an int or a ``{"height", "width"}`` dict."""
    if isinstance(value, dict):
        return int(value["height"]), int(value["width"])
    return int(value), int(value)


@dataclass(frozen=True)
class Preprocessing:
    """How an rgb frame (``uint8 [H, W, 3]``) becomes CLIP pixel values ``[3, h, w]``.

    Resize (short side to ``shortest_edge`` keeping the aspect, or to exactly ``resize_to``;
    bicubic, antialiased), centre-crop to ``crop`` (zero-padded when larger), multiply by
    ``rescale``, then normalise with ``mean``/``std``. ``None`` skips a step.
    """

    shortest_edge: Optional[int]
    resize_to: Optional[tuple[int, int]]
    crop: Optional[tuple[int, int]]
    rescale: float
    mean: Optional[tuple[float, ...]]
    std: Optional[tuple[float, ...]]

    @classmethod
    def standard(cls, image_size: int) -> Preprocessing:
        """CLIP's own: short side to ``image_size``, square centre crop, CLIP mean/std."""
        return cls(image_size, None, (image_size, image_size), 1 / 255, CLIP_MEAN, CLIP_STD)

    @classmethod
    def from_folder(cls, folder: Path, image_size: int) -> Preprocessing:
        """From ``folder/preprocessor_config.json`` if present, else :meth:`standard`."""
        path = Path(folder) / "preprocessor_config.json"
        if not path.is_file():
            return cls.standard(image_size)
        config = json.loads(path.read_text(encoding="utf-8"))
        shortest_edge, resize_to = None, None
        if config.get("do_resize", True):
            size = config.get("size", image_size)
            if isinstance(size, dict) and "shortest_edge" in size:
                shortest_edge = int(size["shortest_edge"])
            elif isinstance(size, dict):
                resize_to = _pair(size)
            else:
                shortest_edge = int(size)
        crop = None
        if config.get("do_center_crop", True):
            crop = _pair(config.get("crop_size", image_size))
        rescale = (
            float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
        )
        mean = std = None
        if config.get("do_normalize", True):
            mean = tuple(float(v) for v in config.get("image_mean", CLIP_MEAN))
            std = tuple(float(v) for v in config.get("image_std", CLIP_STD))
        return cls(shortest_edge, resize_to, crop, rescale, mean, std)

    def __call__(self, frame: np.ndarray) -> Any:
        import torch
        import torch.nn.functional as F

        image = torch.from_numpy(np.array(frame[..., :3], dtype=np.float32))
        image = image.permute(2, 0, 1)[None]  # [1, 3, H, W], 0..255
        height, width = image.shape[-2:]
        target = self.resize_to
        if self.shortest_edge is not None:
            short, long = min(height, width), max(height, width)
            other = int(self.shortest_edge * long / short)
            if height <= width:
                target = (self.shortest_edge, other)
            else:
                target = (other, self.shortest_edge)
        if target is not None and tuple(target) != (height, width):
            image = F.interpolate(
                image, size=target, mode="bicubic", align_corners=False, antialias=True
            ).clamp(0, 255)
        if self.crop is not None:
            image = _center_crop(image, self.crop)
        image = image[0] * self.rescale
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean).view(-1, 1, 1)
            std = torch.tensor(self.std).view(-1, 1, 1)
            image = (image - mean) / std
        return image


def _center_crop(image: Any, size: tuple[int, int]) -> Any:
    """Centre crop of ``[N, C, H, W]`` to ``size``; zero padding where the image is smaller."""
    import torch.nn.functional as F

    height, width = image.shape[-2:]
    crop_h, crop_w = size
    pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
    if pad_h or pad_w:
        image = F.pad(image, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        height, width = image.shape[-2:]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image[..., top : top + crop_h, left : left + crop_w]


def _features(output: Any) -> Any:
    """Projected embeddings from ``get_*_features`` (a tensor, or an output with pooler_output)."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


@dataclass
class ClipScorer:
    """A CLIP model, its tokenizer and image preprocessing, on one device."""

    model: Any
    tokenizer: Any
    preprocessing: Preprocessing
    device: Any

    @classmethod
    @quiet_loading()
    def load(cls, folder: Path) -> ClipScorer:
        """Load ``folder`` (local files only); :class:`StudioError` when it is no CLIP model."""
        import torch
        from transformers import CLIPModel, CLIPTokenizer

        try:
            model = CLIPModel.from_pretrained(str(folder), local_files_only=True)
            tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}")
            raise StudioError(
                f"{folder} ({MODEL_VARIABLE}) could not be loaded as a CLIP model and tokenizer "
                f"({detail}). Point {MODEL_VARIABLE} at a folder saved with CLIPModel and "
                f"CLIPTokenizer save_pretrained, or at a hub id pulled with `studio models pull`."
            ) from None
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = model.to(device=device, dtype=torch.float32).eval()
        preprocessing = Preprocessing.from_folder(
            folder, int(model.config.vision_config.image_size)
        )
        return cls(model, tokenizer, preprocessing, device)

    def image_embeddings(self, frames: Sequence[np.ndarray]) -> Any:
        """Unit-norm CLIP image embeddings ``[N, D]`` (CPU) of rgb frames of one size."""
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(frames), BATCH):
                pixels = torch.stack([self.preprocessing(f) for f in frames[start : start + BATCH]])
                output = self.model.get_image_features(pixel_values=pixels.to(self.device))
                chunks.append(_features(output).float().cpu())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)

    def text_embeddings(self, prompts: Sequence[str]) -> Any:
        """Unit-norm CLIP text embeddings ``[P, D]`` (CPU); prompts truncated to the context."""
        import torch

        limit = int(self.model.config.text_config.max_position_embeddings)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(prompts), BATCH):
                tokens = self.tokenizer(
                    list(prompts[start : start + BATCH]),
                    padding=True,
                    truncation=True,
                    max_length=limit,
                    return_tensors="pt",
                )
                output = self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
                chunks.append(_features(output).float().cpu())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)


def r_precision(image_embeddings: Any, text_embeddings: Any, target: int) -> float:
    """Fraction of image rows whose highest cosine similarity is text row ``target``."""
    import torch.nn.functional as F

    images = F.normalize(image_embeddings.float(), dim=-1)
    texts = F.normalize(text_embeddings.float(), dim=-1)
    best = (images @ texts.T).argmax(dim=-1)
    return int((best == target).sum()) / best.numel()


def evaluate(context: Any) -> dict[str, Any]:
    """The evaluator registered as ``clip-r-precision`` (context: ``studio.eval.EvalContext``)."""
    from studio.api import ModelNotAvailableError, resolve_model

    prompt = context.prompt
    if not prompt:
        return {
            "applicable": False,
            "reason": "The run's config has no system.prompt_processor.prompt to rank.",
        }
    if not context.frames:
        return {"applicable": False, "reason": "The run has no test frames to embed."}
    name = model_name()
    try:
        folder = resolve_model(name, allow_download=False, config_key=MODEL_VARIABLE)
    except ModelNotAvailableError:
        return {"applicable": False, "reason": unavailable_reason(name)}
    candidates, target = candidate_prompts(prompt)
    scorer = ClipScorer.load(folder)
    images = scorer.image_embeddings(context.frames)
    texts = scorer.text_embeddings(candidates)
    return {
        "applicable": True,
        "r_precision": r_precision(images, texts, target),
        "frames": len(context.frames),
        "n_prompts": len(candidates),
        "model": name,
    }
