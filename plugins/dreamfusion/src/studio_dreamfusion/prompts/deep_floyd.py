"""``deep-floyd`` prompt processor: T5-XXL text embeddings ``[77, 4096]`` for DeepFloyd IF.

The encoder loads in fp16 on CUDA (fp32 on CPU). ``load_in_8bit: true`` quantises it with
bitsandbytes (about 15 GB less to hold; the reference's default); it needs bitsandbytes (and accelerate)
and a CUDA device, and fails with a clear message otherwise.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import attrs
import torch

from studio.errors import ConfigError
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
        load_in_8bit: bool = False

    def configure(self) -> None:
        if self.cfg.load_in_8bit:
            self._check_8bit_possible()
        super().configure()

    def _check_8bit_possible(self) -> None:
        missing = [p for p in ("bitsandbytes", "accelerate") if importlib.util.find_spec(p) is None]
        if missing:
            raise ConfigError(
                f"{self.config_path}.load_in_8bit=true needs the package(s) {', '.join(missing)}, "
                f"which are not installed; install them (pip install {' '.join(missing)}) or set "
                f"{self.config_path}.load_in_8bit=false (the fp16 T5 encoder then needs about 10 GB "
                f"more GPU memory, and only while encoding)."
            )
        if self.device.type != "cuda":
            raise ConfigError(
                f"{self.config_path}.load_in_8bit=true needs a CUDA device (bitsandbytes), but the "
                f"prompt processor runs on {self.device}; set {self.config_path}.load_in_8bit=false."
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
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            kwargs["device_map"] = {"": str(self.device)}
        model = T5EncoderModel.from_pretrained(path, subfolder="text_encoder", **kwargs)
        if not self.cfg.load_in_8bit:
            model.to(self.device)
        model.eval().requires_grad_(False)
        return TextEncoder(tokenizer=tokenizer, model=model)

    def encode_prompts(self, encoder: TextEncoder, prompts: list[str]) -> torch.Tensor:
        tokens = encoder.tokenizer(
            prompts,
            padding="max_length",
            max_length=MAX_LENGTH,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        out = encoder.model(
            input_ids=tokens.input_ids.to(self.device),
            attention_mask=tokens.attention_mask.to(self.device),
        )
        return out[0]
