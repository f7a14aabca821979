"""Float64 hand computations of VSD, independent of the code under test.

Each UNet (a float64 copy) runs on ONE sample and ONE conditioning at a time; the predictions are
combined by the reference's formulas written out directly.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch


class HandUNet:
    """A float64 twin of a UNet and its noise schedule."""

    def __init__(self, unet: torch.nn.Module, scheduler: Any):
        self.unet = copy.deepcopy(unet).to(torch.float64)
        self.abar_table = scheduler.alphas_cumprod.to(torch.float64)
        self.prediction_type = scheduler.config.prediction_type

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        return self.abar_table[t].view(-1, 1, 1, 1)

    @torch.no_grad()
    def raw(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        camera: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The UNet's output for one sample ``x`` ``[C, H, W]``, text ``[L, D]``, camera [16]."""
        extra = {} if camera is None else {"class_labels": camera.double()[None]}
        out = self.unet(x[None], t.reshape(1), encoder_hidden_states=text[None].double(), **extra)
        return out.sample[0]

    def eps(self, x: torch.Tensor, t: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        """Noise estimate for one sample: v-predictions converted, ``sqrt(1-a) x + sqrt(a) v``."""
        out = self.raw(x, t, *cond)
        if self.prediction_type == "epsilon":
            return out
        abar = self.abar_table[t]
        return (1 - abar).sqrt() * x + abar.sqrt() * out


def noisy(z: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    return abar.sqrt() * z.double() + (1.0 - abar).sqrt() * noise.double()


def vsd_grad(
    pretrained: HandUNet,
    lora: HandUNet,
    z: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    text_vd: torch.Tensor,
    text: torch.Tensor,
    camera: torch.Tensor,
    scale: float,
    scale_lora: float,
) -> torch.Tensor:
    """``(1 - abar_t) (eps_pre - eps_lora)``: diffusers-form CFG of the pretrained model (view
    text cond/uncond) and of the LoRA model (plain text; camera / zero camera)."""
    batch = z.shape[0]
    abar = pretrained.abar(t)
    x = noisy(z, noise, abar)
    grads = []
    for i in range(batch):
        eps_c = pretrained.eps(x[i], t[i], text_vd[i])
        eps_u = pretrained.eps(x[i], t[i], text_vd[batch + i])
        eps_pre = eps_u + scale * (eps_c - eps_u)
        lora_c = lora.eps(x[i], t[i], text[i], camera[i])
        lora_0 = lora.eps(x[i], t[i], text[i], torch.zeros_like(camera[i]))
        eps_lora = lora_0 + scale_lora * (lora_c - lora_0)
        grads.append((1.0 - abar[i]) * (eps_pre - eps_lora))
    return torch.stack(grads)


def lora_loss(
    lora: HandUNet,
    z: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    text: torch.Tensor,
    camera: torch.Tensor,
    keep: torch.Tensor,
) -> float:
    """``mean((lora(x_t, t, text, camera * keep) - target)^2)``, target = noise or velocity."""
    abar = lora.abar(t)
    x = noisy(z, noise, abar)
    if lora.prediction_type == "epsilon":
        target = noise.double()
    else:
        target = abar.sqrt() * noise.double() - (1 - abar).sqrt() * z.double()
    preds = torch.stack(
        [lora.raw(x[i], t[i], text[i], camera[i] * keep[i]) for i in range(z.shape[0])]
    )
    return float(((preds - target) ** 2).mean())


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|`` in float64."""
    return float((actual.double() - expected).abs().max() / expected.abs().max())
