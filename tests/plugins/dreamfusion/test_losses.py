"""Regularisers: the reference's definitions, checked on hand-computed values."""

from __future__ import annotations

import math

import torch

from studio_dreamfusion.losses import opaque_loss, orientation_loss, sparsity_loss, z_variance_loss


def test_orientation_penalises_normals_along_the_ray_only():
    weights = torch.tensor([[0.5], [0.25], [1.0]], requires_grad=True)
    dirs = torch.tensor([[1.0, 0, 0]] * 3)
    normals = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0.6, 0.8, 0]], requires_grad=True)
    opacity = torch.tensor([[[[0.9], [0.0]]]])  # one visible pixel
    loss = orientation_loss(weights, normals, dirs, opacity)
    assert math.isclose(loss.item(), 0.5 * 1.0 + 0.25 * 0.0 + 1.0 * 0.36, rel_tol=1e-6)
    loss.backward()
    assert weights.grad is None  # weights are detached: only the normals are pushed
    assert normals.grad[0, 0] > 0 and normals.grad[1].abs().sum() == 0


def test_sparsity_and_opaque():
    opacity = torch.tensor([0.0, 0.5, 1.0])
    assert math.isclose(
        sparsity_loss(opacity).item(), (0.1 + math.sqrt(0.26) + math.sqrt(1.01)) / 3, rel_tol=1e-6
    )
    o = torch.tensor([1e-3, 0.5, 1 - 1e-3])
    entropy = [-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in o.tolist()]
    assert math.isclose(
        opaque_loss(torch.tensor([0.0, 0.5, 1.0])).item(), sum(entropy) / 3, rel_tol=1e-5
    )
    assert opaque_loss(torch.tensor([0.5])) > opaque_loss(torch.tensor([0.99]))


def test_z_variance_uses_opaque_pixels_only():
    variance = torch.tensor([1.0, 3.0, 100.0])
    opacity = torch.tensor([0.9, 0.6, 0.2])
    assert z_variance_loss(variance, opacity).item() == 2.0
    assert z_variance_loss(variance, torch.zeros(3)).item() == 0.0
