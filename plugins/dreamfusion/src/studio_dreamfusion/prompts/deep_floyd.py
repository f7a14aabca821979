"""``deep-floyd`` prompt processor: T5-XXL text embeddings ``[77, 4096]`` for DeepFloyd IF.

The encoder loads in fp16 on CUDA (fp32 on CPU). ``load_in_8bit: true`` quantises its linear
layers to int8 with bitsandbytes (LLM.int8), all but the feed-forward output projections ``wo``,
which transformers keeps unquantised: for T5-XXL 3.6B of its 4.8B weights, about 3.6 GB less than
in fp16 (11 GB less than in fp32). It needs bitsandbytes and accelerate (``pip install
studio-dreamfusion[int8]``) and fails with a clear message without them, or when the installed
bitsandbytes cannot quantise on the processor's device (releases before CPU support).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import torch

from studio.api import ConfigError, importable, one_line
from studio_dreamfusion.pretrained import (
    pick_variant,
    resolve_pretrained,
    transformers_dtype_kwargs,
)
from studio_dreamfusion.prompts.base import PromptProcessor, TextEncoder

#: Token length of every IF prompt (IF's own pipeline also pads to 77).
MAX_LENGTH = 77


class DeepFloydPromptProcessor(PromptProcessor):
    """T5 tokenizer + ``T5EncoderModel``; padded/truncated to 77 tokens, attention mask applied."""

    @attrs.define(kw_only=True)
    class Config(PromptProcessor.Config):
        pretrained_model_name_or_path: str = "DeepFloyd/IF-I-XL-v1.0"
        """DeepFloyd IF model id or local folder whose T5 tokenizer and text encoder embed the
        prompts."""
        load_in_8bit: bool = False
        """Load the T5 encoder with int8 linear layers (about 3.6 GB less memory in fp16; needs
        bitsandbytes and accelerate)."""

    def configure(self) -> None:
        if self.cfg.load_in_8bit:
            self._check_8bit_possible()
        super().configure()

    def _check_8bit_possible(self) -> None:
        missing = [p for p in ("bitsandbytes", "accelerate") if not importable(p)]
        if missing:
            raise ConfigError(
                f"{self.config_path}.load_in_8bit=true needs the package(s) {', '.join(missing)}, "
                f"which are not installed; install them (pip install {' '.join(missing)}) or set "
                f"{self.config_path}.load_in_8bit=false (the unquantised T5-XXL encoder then needs "
                f"about 3.6 GB more memory in fp16, and only while encoding)."
            )

    def load_text_encoder(self) -> TextEncoder:
        from transformers import AutoTokenizer, T5EncoderModel

        path = resolve_pretrained(
            self.cfg.pretrained_model_name_or_path,
            subfolders=["tokenizer", "text_encoder"],
            config_key=f"{self.config_path}.pretrained_model_name_or_path",
        )
        tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        kwargs: dict[str, Any] = transformers_dtype_kwargs(dtype)
        variant = pick_variant(path / "text_encoder", dtype)
        if variant:
            kwargs["variant"] = variant
        if self.cfg.load_in_8bit:
            model = self._load_8bit(path, kwargs)
        else:
            model = T5EncoderModel.from_pretrained(path, subfolder="text_encoder", **kwargs)
            model.to(self.device)
        model.eval().requires_grad_(False)
        return TextEncoder(tokenizer=tokenizer, model=model)

    def _load_8bit(self, path: Any, kwargs: dict[str, Any]) -> torch.nn.Module:
        """The encoder with int8 linear layers on ``self.device``; a failure of bitsandbytes to
        quantise there becomes one ConfigError (its own message included)."""
        import bitsandbytes
        from transformers import BitsAndBytesConfig, T5EncoderModel

        kwargs = {
            **kwargs,
            "quantization_config": BitsAndBytesConfig(load_in_8bit=True),
            "device_map": {"": str(self.device)},
        }
        try:
            return T5EncoderModel.from_pretrained(path, subfolder="text_encoder", **kwargs)
        except (RuntimeError, ValueError, ImportError, NotImplementedError) as err:
            raise ConfigError(
                f"{self.config_path}.load_in_8bit=true: bitsandbytes "
                f"{getattr(bitsandbytes, '__version__', '?')} could not quantise the T5 encoder "
                f"on {self.device} ({type(err).__name__}: {one_line(err)}). "
                f"Upgrade bitsandbytes (pip install -U bitsandbytes; CPU support needs a recent "
                f"release), run the prompt processor on CUDA, or set "
                f"{self.config_path}.load_in_8bit=false."
            ) from err

    def encode_prompts(self, encoder: TextEncoder, prompts: list[str]) -> torch.Tensor:
        tokens = encoder.tokenizer(
            prompts,
            padding="max_length",
            max_length=MAX_LENGTH,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        with _quiet_int8_casts():
            out = encoder.model(
                input_ids=tokens.input_ids.to(self.device),
                attention_mask=tokens.attention_mask.to(self.device),
            )
        return out[0]


@contextlib.contextmanager
def _quiet_int8_casts() -> Iterator[None]:
    """Silence bitsandbytes' per-call notice that int8 layers cast fp32 activations (the CPU
    encoder's) to fp16: expected there, and it would print once per layer and prompt."""
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)
