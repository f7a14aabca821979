"""Low-rank adapters (LoRA, through peft) on every attention projection of a diffusers UNet.

:func:`add_lora` injects rank-``r`` adapters into each attention's ``to_q``, ``to_k``, ``to_v``
and ``to_out.0`` (self- and cross-attention alike): ``W x + B A x`` with ``A`` ``[r, in]`` drawn
from N(0, 1/r^2) and ``B`` ``[out, r]`` zero, scale ``alpha / r = 1``. At initialisation the UNet
therefore computes exactly what it computed before. The adapters' parameters are float32 (the
frozen UNet may run in float16) and are the only ones that require gradients.

It returns :class:`LoRALayers`, a module that holds the adapters' down/up projections and
nothing else (they stay shared with the UNet), so its parameters and state dict are exactly
the trainable LoRA state, never a base weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

#: The attention projections that get an adapter (diffusers' ``Attention`` module names).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: peft's name of the one adapter the guidance trains.
ADAPTER = "default"


class LoRALayers(nn.Module):
    """The adapters of one UNet: ``adapters[<module path, "." as "_">] = {"down", "up"}``."""

    def __init__(self, adapters: dict[str, tuple[nn.Module, nn.Module]]):
        super().__init__()
        self.adapters = nn.ModuleDict(
            {name: nn.ModuleDict({"down": down, "up": up}) for name, (down, up) in adapters.items()}
        )

    def __len__(self) -> int:
        return len(self.adapters)


def lora_modules(unet: nn.Module) -> dict[str, nn.Module]:
    """The UNet's peft LoRA layers by module path (empty before :func:`add_lora`)."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in unet.named_modules() if isinstance(m, LoraLayer)}


def add_lora(unet: nn.Module, rank: int) -> LoRALayers:
    """Inject rank-``rank`` adapters into every attention projection of the frozen ``unet``
    (in place) and return them; the UNet's output is unchanged until they are trained."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        init_lora_weights="gaussian",
        target_modules=list(LORA_TARGETS),
    )
    inject_adapter_in_model(config, unet, adapter_name=ADAPTER)
    adapters: dict[str, tuple[nn.Module, nn.Module]] = {}
    for name, layer in lora_modules(unet).items():
        key = name.replace(".", "_")
        if key in adapters:
            raise RuntimeError(f"two LoRA layers map to the name {key!r}")
        down, up = layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]
        for param in (*down.parameters(), *up.parameters()):
            param.data = param.data.float()
            param.requires_grad_(True)
        adapters[key] = (down, up)
    if not adapters:
        raise ValueError(
            f"the UNet has no attention projection named {', '.join(LORA_TARGETS)}: it is not a "
            "Stable Diffusion UNet with transformer attention blocks."
        )
    return LoRALayers(adapters)


def set_lora_enabled(unet: nn.Module, enabled: bool) -> None:
    """Switch every LoRA layer of ``unet`` on (base + adapter) or off (exactly the base);
    whether each adapter parameter requires gradients is left as it was (peft's switch would
    change it)."""
    layers = lora_modules(unet)
    flags = [(p, p.requires_grad) for layer in layers.values() for p in layer.parameters()]
    for layer in layers.values():
        layer.enable_adapters(enabled)
    for param, flag in flags:
        param.requires_grad_(flag)


@contextmanager
def pretrained_view(unet: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``unet`` is its pretrained self: adapters off and no class embedding
    (for a guidance whose pretrained and LoRA models are one UNet); restored afterwards."""
    class_embedding = unet.class_embedding
    unet.class_embedding = None
    set_lora_enabled(unet, False)
    try:
        yield unet
    finally:
        unet.class_embedding = class_embedding
        set_lora_enabled(unet, True)
