"""The camera class embedding: sized from the UNet's own time embedding, installed once."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from studio_prolificdreamer.guidance.camera import (
    camera_embedding,
    install_camera_embedding,
    time_embedding_width,
)


def tiny_unet(**config: object) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4, **config,
    )  # fmt: skip


@pytest.mark.parametrize(("config", "width"), [({}, 32), ({"time_embedding_dim": 24}, 24)])
def test_width_comes_from_the_unet(config: dict[str, object], width: int) -> None:
    unet = tiny_unet(**config)
    assert time_embedding_width(unet) == width
    embedding = camera_embedding(unet)
    assert (embedding.linear_1.in_features, embedding.linear_1.out_features) == (16, width)
    assert (embedding.linear_2.in_features, embedding.linear_2.out_features) == (width, width)
    assert isinstance(embedding.act, torch.nn.SiLU)


def test_installed_embedding_conditions_the_unet() -> None:
    unet = tiny_unet()
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([3, 600]), torch.randn(2, 5, 32)
    install_camera_embedding(unet, camera_embedding(unet), "k")
    with torch.no_grad():
        a = unet(x, t, encoder_hidden_states=text, class_labels=torch.randn(2, 16)).sample
        b = unet(x, t, encoder_hidden_states=text, class_labels=torch.randn(2, 16)).sample
    assert (a - b).abs().max() > 1e-4  # the camera changes the prediction


def test_a_unet_with_a_class_embedding_is_refused() -> None:
    unet = tiny_unet(num_class_embeds=3)
    with pytest.raises(ValueError, match=r"system.guidance.x: the UNet already has a class emb"):
        install_camera_embedding(unet, camera_embedding(unet), "system.guidance.x")
