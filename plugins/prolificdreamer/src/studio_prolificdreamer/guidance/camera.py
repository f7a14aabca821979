"""The camera condition of the LoRA UNet: a class embedding fed the flattened camera matrix.

:func:`camera_embedding` builds diffusers' ``TimestepEmbedding`` (``Linear(16, D)``, SiLU,
``Linear(D, D)``) with ``D`` read from the UNet's own time embedding (1280 for Stable Diffusion,
whatever a smaller model uses), and :func:`install_camera_embedding` makes it the UNet's
``class_embedding``: the UNet then adds ``embedding(class_labels)`` to its time embedding, with
the 16 camera values as ``class_labels``. Its parameters are float32 and trainable; diffusers
casts its output to the UNet's dtype.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from studio_prolificdreamer.guidance.vsd import CAMERA_FEATURES


def time_embedding_width(unet: Any) -> int:
    """Width of what ``unet``'s time embedding adds to each block (its last linear layer's
    output), which a class embedding must match."""
    time_embedding = getattr(unet, "time_embedding", None)
    last = getattr(time_embedding, "linear_2", None)
    if not isinstance(last, nn.Linear):
        raise ValueError(
            "the UNet has no diffusers TimestepEmbedding (time_embedding.linear_2): it is not a "
            "UNet2DConditionModel, so it cannot take a camera class embedding."
        )
    return int(last.out_features)


def camera_embedding(unet: Any, in_features: int = CAMERA_FEATURES) -> nn.Module:
    """A fresh float32 ``TimestepEmbedding(in_features, width)`` on ``unet``'s device, ``width``
    being :func:`time_embedding_width` (default init of its linear layers)."""
    from diffusers.models.embeddings import TimestepEmbedding

    width = time_embedding_width(unet)
    device = unet.time_embedding.linear_2.weight.device
    return TimestepEmbedding(in_features, width).to(device=device)


def install_camera_embedding(unet: Any, embedding: nn.Module, key: str) -> None:
    """Make ``embedding`` ``unet``'s class embedding; a UNet that already has a class embedding
    (``class_embed_type``/``num_class_embeds`` in its config) is refused, naming config ``key``."""
    config = unet.config
    if unet.class_embedding is not None or getattr(config, "class_embeddings_concat", False):
        raise ValueError(
            f"{key}: the UNet already has a class embedding (class_embed_type="
            f"{config.class_embed_type!r}, num_class_embeds={config.num_class_embeds!r}), so the "
            "camera condition has no place to go; use a Stable Diffusion text-to-image model, "
            "whose UNet has none."
        )
    unet.class_embedding = embedding
