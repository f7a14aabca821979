"""SJC's emptiness and centre-depth losses against hand computations (CPU)."""

from __future__ import annotations

import math

import torch

from studio_sjc.losses import center_depth_loss, emptiness_loss
from tests.plugins.sjc.scene import camera_rays, latent_field, latent_renderer


def hand_weights(geometry, o: torch.Tensor, d: torch.Tensor, step: float) -> list[float]:
    """Float64, one ray: march from t = 0 in steps of ``step``; every interval whose midpoint is
    inside the box [-1, 1]^3 is a sample; w_i = T_i (1 - exp(-sigma_i step))."""
    weights, optical_depth = [], 0.0
    for k in range(int(10.0 / step)):
        t = (k + 0.5) * step
        point = o + t * d
        if point.abs().max() >= 1.0:
            continue
        sigma = float(geometry.forward_density(point[None].float())[0, 0])
        alpha = 1.0 - math.exp(-sigma * step)
        weights.append(math.exp(-optical_depth) * alpha)
        optical_depth += sigma * step
    return weights


def test_emptiness_is_the_mean_over_every_marching_sample_of_log1p_scale_w():
    geometry = latent_field()
    renderer = latent_renderer(geometry, "torch", samples=48).train()
    o, d = camera_rays(6)
    out = renderer(rays_o=o, rays_d=d, light_positions=torch.zeros(1, 3))
    step = 1.732 * 2 / 48
    rays = zip(o.reshape(-1, 3).double(), d.reshape(-1, 3).double(), strict=True)
    with torch.no_grad():
        hand = [w for oi, di in rays for w in hand_weights(geometry, oi, di, step)]
    assert out["weights"].shape == (len(hand), 1)  # the same samples, no padding
    expected = sum(math.log1p(10.0 * w) for w in hand) / len(hand)
    loss = emptiness_loss(out["weights"], 10.0)
    actual = loss.item()
    assert abs(actual - expected) < 1e-4 * expected, (actual, expected)
    # and its gradient reaches the grid
    loss.backward()
    assert geometry.grid.grad[0, 0].abs().sum() > 0


def test_center_depth_loss_by_hand():
    depth = torch.zeros(1, 4, 4, 1)
    opacity = torch.zeros(1, 4, 4, 1)
    depth[0, 1:3, 1:3] = 1.0  # an opaque object at depth 1 in the central 2x2 box
    opacity[0, 1:3, 1:3] = 1.0
    loss = center_depth_loss(depth, opacity, center_ratio=0.5)
    x = 1.0 - 10.0 + 1e-12  # centre mean 1, border mean 10 (empty: 10 * (1 - 0))
    assert float(loss) == float(torch.sign(torch.tensor(x)) * math.log(abs(x)))
    # a centre farther than the border: positive x, log(x)
    far = center_depth_loss(depth * 0 + 12.0, opacity * 0 + 1.0, 0.5)
    assert math.isclose(float(far), math.log(1e-12), rel_tol=1e-6)
    assert torch.isfinite(loss)
