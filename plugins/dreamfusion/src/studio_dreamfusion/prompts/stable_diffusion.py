"""``stable-diffusion`` prompt processor: CLIP text embeddings ``[77, D]`` (D = 1024 for SD 2.x)."""

from __future__ import annotations

import attrs
import torch

from studio_dreamfusion.pretrained import resolve_pretrained, transformers_dtype_kwargs
from studio_dreamfusion.prompts.base import PromptProcessor, TextEncoder


class StableDiffusionPromptProcessor(PromptProcessor):
    """CLIP tokenizer + ``CLIPTextModel`` (subfolders ``tokenizer``, ``text_encoder``); prompts are
    padded to the tokenizer's ``model_max_length`` and the last hidden state is the embedding."""

    @attrs.define(kw_only=True)
    class Config(PromptProcessor.Config):
        pretrained_model_name_or_path: str = "stabilityai/stable-diffusion-2-1-base"
        """Stable Diffusion model id or local folder whose CLIP tokenizer and text encoder embed
        the prompts (use the guidance's model)."""

    graph_state = PromptProcessor.graph_state  # nothing of its own runs in a training step

    def load_text_encoder(self) -> TextEncoder:
        from transformers import AutoTokenizer, CLIPTextModel

        path = resolve_pretrained(
            self.cfg.pretrained_model_name_or_path,
            subfolders=["tokenizer", "text_encoder"],
            config_key=f"{self.config_path}.pretrained_model_name_or_path",
        )
        tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
        # float32 whatever the stored weights are (fp16 checkpoints would otherwise encode in
        # half precision, also on CPUs); CLIP is small and runs once per prompt
        model = CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", **transformers_dtype_kwargs(torch.float32)
        )
        model.to(self.device).eval().requires_grad_(False)
        return TextEncoder(tokenizer=tokenizer, model=model)

    def encode_prompts(self, encoder: TextEncoder, prompts: list[str]) -> torch.Tensor:
        tokens = encoder.tokenizer(
            prompts,
            padding="max_length",
            max_length=encoder.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return encoder.model(tokens.input_ids.to(self.device))[0]
