"""Float64 hand computations of SDS, independent of the code under test.

They run a float64 copy of the UNet on each conditioning separately (no batching, no layout
tricks) and combine the predictions by the reference's formulas written out directly.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from studio_dreamfusion.prompts.output import PromptProcessorOutput


def weight64(strategy: str, abar: torch.Tensor) -> torch.Tensor:
    if strategy == "sds":
        return 1.0 - abar
    if strategy == "uniform":
        return torch.ones_like(abar)
    if strategy == "fantasia3d":
        return abar.sqrt() * (1.0 - abar)
    raise AssertionError(strategy)


class HandSDS:
    """Float64 twin of a guidance's UNet and noise schedule."""

    def __init__(self, unet: torch.nn.Module, scheduler: Any, out_channels: int):
        self.unet = copy.deepcopy(unet).to(torch.float64)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
        self.out_channels = out_channels

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod[t].view(-1, 1, 1, 1)

    def noisy(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.abar(t)
        return abar.sqrt() * z.double() + (1.0 - abar).sqrt() * noise.double()

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Prediction for ONE sample ``x`` ``[C, H, W]`` at timestep ``t`` with ``[L, D]`` text."""
        out = self.unet(x[None], t.reshape(1), encoder_hidden_states=embedding[None].double())
        return out.sample[0, : self.out_channels]

    def cfg_grad(
        self,
        z: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        scale: float,
        strategy: str,
        diffusers_convention: bool = False,
    ) -> torch.Tensor:
        """``w(t) * (eps_hat - noise)`` with ``eps_hat = eps_c + s * (eps_c - eps_u)`` (or the
        diffusers convention ``eps_u + s * (eps_c - eps_u)`` to show the difference)."""
        x = self.noisy(z, noise, t)
        rows = []
        for i in range(z.shape[0]):
            eps_c = self.eps(x[i], t[i], cond[i])
            eps_u = self.eps(x[i], t[i], uncond[i])
            base = eps_u if diffusers_convention else eps_c
            rows.append(base + scale * (eps_c - eps_u))
        eps_hat = torch.stack(rows)
        return weight64(strategy, self.abar(t)) * (eps_hat - noise.double())

    def perp_neg_grad(
        self,
        z: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        prompts: PromptProcessorOutput,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        scale: float,
        strategy: str,
    ) -> torch.Tensor:
        """Perp-Neg: ``eps_u + s * (e_pos + sum_j w_j * perp(e_j, e_pos))`` per sample."""
        batch = z.shape[0]
        emb, weights = prompts.get_text_embeddings_perp_neg(elevation, azimuth, elevation * 0 + 1)
        x = self.noisy(z, noise, t)
        rows = []
        for i in range(batch):
            eps_u = self.eps(x[i], t[i], emb[batch + i])
            e_pos = self.eps(x[i], t[i], emb[i]) - eps_u
            total = e_pos.clone()
            for j in range(2):
                e_j = self.eps(x[i], t[i], emb[2 * batch + 2 * i + j]) - eps_u
                proj = (e_j * e_pos).sum() / max(float((e_pos * e_pos).sum()), 1e-6)
                total += float(weights[i, j]) * (e_j - proj * e_pos)
            rows.append(eps_u + scale * total)
        return weight64(strategy, self.abar(t)) * (torch.stack(rows) - noise.double())


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|`` in float64."""
    return float((actual.double() - expected).abs().max() / expected.abs().max())


@contextmanager
def cache_dir(folder: Path) -> Iterator[None]:
    """``$STUDIO_CACHE_DIR`` set to ``folder`` for the duration (usable in wider-scoped fixtures)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDIO_CACHE_DIR", str(folder))
        yield
