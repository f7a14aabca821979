"""The pure VSD formulas (:mod:`studio_prolificdreamer.guidance.vsd`) in float64."""

from __future__ import annotations

import pytest
import torch

from studio.api import ConfigError
from studio_prolificdreamer.guidance.vsd import (
    camera_condition,
    check_prediction_type,
    diffusers_guidance,
    draw_camera_keep,
    lora_target,
    to_epsilon,
    vsd_gradient,
    vsd_loss,
)

GEN = torch.Generator().manual_seed(0)
SHAPE = (3, 4, 5, 5)


def randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


def test_v_prediction_round_trip() -> None:
    """The velocity target of (z, eps) turns back into eps at x_t (and epsilon is untouched)."""
    z, eps = randn(*SHAPE), randn(*SHAPE)
    abar = torch.tensor([0.999, 0.5, 0.01], dtype=torch.float64)
    a = abar.view(-1, 1, 1, 1)
    x_t = a.sqrt() * z + (1 - a).sqrt() * eps
    v = lora_target(z, eps, abar, "v_prediction")
    assert torch.allclose(v, a.sqrt() * eps - (1 - a).sqrt() * z, atol=0, rtol=0)
    assert (to_epsilon(v, x_t, abar, "v_prediction") - eps).abs().max() < 1e-12
    assert lora_target(z, eps, abar, "epsilon") is eps
    assert to_epsilon(eps, x_t, abar, "epsilon") is eps


def test_velocity_matches_diffusers() -> None:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    z, eps = randn(*SHAPE), randn(*SHAPE)
    t = torch.tensor([0, 499, 999])
    abar = scheduler.alphas_cumprod.double()[t]
    expected = scheduler.get_velocity(z, eps, t)
    assert (lora_target(z, eps, abar, "v_prediction") - expected).abs().max() < 1e-6


def test_diffusers_guidance_form() -> None:
    cond, uncond = randn(*SHAPE), randn(*SHAPE)
    assert torch.equal(diffusers_guidance(cond, uncond, 1.0), uncond + (cond - uncond))
    assert torch.allclose(diffusers_guidance(cond, uncond, 7.5), uncond + 7.5 * (cond - uncond))


def test_gradient_and_reparameterised_loss() -> None:
    eps_pre, eps_lora = randn(*SHAPE), randn(*SHAPE)
    weight = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    grad = vsd_gradient(eps_pre, eps_lora, weight)
    assert torch.equal(grad, weight.view(-1, 1, 1, 1) * (eps_pre - eps_lora))
    assert vsd_gradient(eps_pre, eps_lora, weight, grad_clip=0.05).abs().max() <= 0.05
    z = randn(*SHAPE).requires_grad_()
    loss = vsd_loss(z, grad)
    loss.backward()
    assert torch.allclose(z.grad, grad / SHAPE[0])
    assert torch.isclose(loss, 0.5 * (grad**2).sum() / SHAPE[0])


def test_camera_condition_flattens_row_major() -> None:
    c2w = randn(2, 4, 4)
    flat = camera_condition(c2w)
    assert flat.shape == (2, 16) and torch.equal(flat[1, 4:8], c2w[1, 1])
    with pytest.raises(ValueError, match=r"c2w as \[batch, 4, 4\].*got shape \(2, 3, 4\)"):
        camera_condition(randn(2, 3, 4))


def test_camera_drop_rate() -> None:
    keep = draw_camera_keep(20000, torch.device("cpu"), generator=torch.Generator().manual_seed(1))
    assert set(keep.unique().tolist()) == {0.0, 1.0}
    assert abs(float(1 - keep.mean()) - 0.1) < 0.01


def test_unknown_prediction_type_names_the_key_and_fix() -> None:
    with pytest.raises(ConfigError) as info:
        check_prediction_type("sample", "system.guidance.pretrained_model_name_or_path_lora")
    message = str(info.value)
    assert "\n" not in message
    assert "system.guidance.pretrained_model_name_or_path_lora" in message
    assert "prediction_type='sample'" in message and "'v_prediction'" in message
