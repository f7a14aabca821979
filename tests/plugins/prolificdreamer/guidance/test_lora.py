"""LoRA adapters through peft: exact no-op at initialisation, exact switch-off, frozen base."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from studio_prolificdreamer.guidance.camera import camera_embedding, install_camera_embedding
from studio_prolificdreamer.guidance.lora import add_lora, pretrained_view, set_lora_enabled


def predict(unet: UNet2DConditionModel, **extra: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    x, text = torch.randn(2, 4, 16, 16, generator=gen), torch.randn(2, 77, 32, generator=gen)
    with torch.no_grad():
        return unet(x, torch.tensor([5, 700]), encoder_hidden_states=text, **extra).sample


def test_lora_at_initialisation_leaves_the_unet_exactly_unchanged(tiny_sd_model: Path) -> None:
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_model, subfolder="unet")
    unet.requires_grad_(False)
    before = predict(unet)
    layers = add_lora(unet, rank=4)
    assert torch.equal(predict(unet), before)  # bitwise: the up-projections are zero

    attentions = [m for m in unet.modules() if isinstance(m, Attention)]
    assert len(layers) == 4 * len(attentions)  # q, k, v, out of every attention
    for pair in layers.adapters.values():
        down, up = pair["down"].weight, pair["up"].weight
        assert down.shape[0] == 4 and up.shape[1] == 4  # rank 4
        assert torch.count_nonzero(up) == 0 and torch.count_nonzero(down) > 0
        assert down.dtype == up.dtype == torch.float32
    trainable = {id(p) for p in unet.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in layers.parameters()}


def test_switching_off_gives_the_pretrained_unet_exactly(tiny_sd_model: Path) -> None:
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_model, subfolder="unet")
    unet.requires_grad_(False)
    before = predict(unet)
    layers = add_lora(unet, rank=4)
    with torch.no_grad():
        for param in layers.parameters():
            param.normal_(0.0, 0.3)
    assert (predict(unet) - before).abs().max() > 1e-3  # trained adapters matter
    set_lora_enabled(unet, False)
    assert torch.equal(predict(unet), before)
    set_lora_enabled(unet, True)

    embedding = camera_embedding(unet)
    install_camera_embedding(unet, embedding, "k")
    with pretrained_view(unet):  # one UNet serving as the pretrained model
        assert torch.equal(predict(unet), before)
    assert unet.class_embedding is embedding
    assert all(p.requires_grad for p in layers.parameters())  # peft's switch did not freeze
    assert (predict(unet, class_labels=torch.zeros(2, 16)) - before).abs().max() > 1e-3
