"""The shared SDS math: CFG and Perp-Neg combinations, weights, clipping, NaN guard, timesteps."""

from __future__ import annotations

import pytest
import torch

from studio.errors import ConfigError
from studio_dreamfusion.guidance import sds


def test_classifier_free_guidance_reference_convention() -> None:
    cond, uncond = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    # eps_c + s (eps_c - eps_u), not diffusers' eps_u + s (eps_c - eps_u)
    expected = torch.tensor([1.0 + 7.5 * 0.5, -2.0 + 7.5 * -3.0])
    assert torch.equal(sds.classifier_free_guidance(cond, uncond, 7.5), expected)


def test_perpendicular_component_is_orthogonal_per_sample() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64)
    p = sds.perpendicular_component(x, y)
    assert (p * y).sum(dim=(1, 2, 3)).abs().max() < 1e-12
    # x - p is parallel to y, sample by sample
    for i in range(3):
        c = float(((x[i] - p[i]) * y[i]).sum() / (y[i] * y[i]).sum())
        torch.testing.assert_close(x[i] - p[i], c * y[i], rtol=0, atol=1e-12)
    # a zero y leaves x unchanged (the 1e-6 floor avoids 0/0)
    torch.testing.assert_close(sds.perpendicular_component(x, torch.zeros_like(y)), x)


def test_perp_neg_guidance_matches_hand_computation() -> None:
    gen = torch.Generator().manual_seed(2)
    b, k, s = 3, 2, 7.5
    pos, unc = (torch.randn(b, 4, 3, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    neg = torch.randn(b * k, 4, 3, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(b, k, generator=gen, dtype=torch.float64)
    got = sds.perp_neg_guidance(pos, unc, neg, w, s)
    for i in range(b):
        e_pos = (pos[i] - unc[i]).flatten()
        total = e_pos.clone()
        for j in range(k):
            e = (neg[k * i + j] - unc[i]).flatten()
            total += w[i, j] * (e - (e @ e_pos) / (e_pos @ e_pos) * e_pos)
        expected = unc[i].flatten() + s * total
        torch.testing.assert_close(got[i].flatten(), expected, rtol=0, atol=1e-12)


def test_weightings() -> None:
    abar = torch.tensor([0.04, 0.25, 0.81], dtype=torch.float64)
    torch.testing.assert_close(sds.sds_weight("sds", abar), 1 - abar)
    torch.testing.assert_close(sds.sds_weight("uniform", abar), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(
        sds.sds_weight("fantasia3d", abar),
        torch.tensor([0.2 * 0.96, 0.5 * 0.75, 0.9 * 0.19]).double(),
    )
    with pytest.raises(ConfigError, match=r"weighting_strategy='sjc'.*'sds', 'uniform'"):
        sds.sds_weight("sjc", abar)


def test_gradient_nan_guard_and_clipping() -> None:
    eps_hat = torch.tensor([[0.3, float("nan"), float("inf"), -float("inf"), -2.0]])
    noise = torch.zeros_like(eps_hat)
    w = torch.tensor([0.5])
    grad = sds.sds_gradient(eps_hat, noise, w)
    assert torch.isfinite(grad).all() and grad[0, 1] == 0.0
    assert grad[0, 0] == 0.15 and grad[0, 4] == -1.0
    clipped = sds.sds_gradient(eps_hat, noise, w, grad_clip=0.2)
    assert torch.equal(clipped, torch.tensor([[0.15, 0.0, 0.2, -0.2, -0.2]]))


def test_loss_gradient_is_grad_over_batch() -> None:
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64)
    loss = sds.sds_loss(z, g)
    loss.backward()
    torch.testing.assert_close(z.grad, g / 4, rtol=0, atol=1e-15)
    torch.testing.assert_close(loss, 0.5 * (g**2).sum() / 4)


def test_step_range_and_sampling_bounds() -> None:
    assert sds.step_range(1000, 0.02, 0.98) == (20, 980)
    assert sds.step_range(1000, 0.5, 0.5) == (500, 500)
    # the reference draws t = 1000 for a percent of 1.0, one past its 1000-entry tables
    assert sds.step_range(1000, 0.0, 1.0) == (0, 999)
    assert sds.step_range(1000, 1.0, 1.0) == (999, 999)
    gen = torch.Generator().manual_seed(4)
    t = sds.sample_timesteps(4000, 500, 503, torch.device("cpu"), generator=gen)
    assert t.dtype == torch.long and t.shape == (4000,)
    counts = torch.bincount(t - 500, minlength=4)
    assert t.min() == 500 and t.max() == 503 and counts.min() > 850  # both ends inclusive, uniform
