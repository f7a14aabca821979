"""PromptProcessorOutput: per-camera embedding selection and Perp-Neg embeddings/weights."""

from __future__ import annotations

import math

import pytest
import torch

from studio.errors import ConfigError
from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_dreamfusion.prompts.views import ViewThresholds, build_directions

L, D = 5, 3
SIDE, FRONT, BACK, OVERHEAD = range(4)
F_SB, F_FSB, F_FS, F_SF = (
    (1.0, 0.5, -0.606),
    (1.0, 0.5, 0.967),
    (4.0, 0.5, -2.426),
    (4.0, 0.5, -2.426),
)


def make_output(use_perp_neg: bool = False) -> PromptProcessorOutput:
    gen = torch.Generator().manual_seed(0)
    directions = build_directions("p", "n", ViewThresholds())
    return PromptProcessorOutput(
        text_embeddings=torch.randn(L, D, generator=gen, dtype=torch.float64),
        uncond_text_embeddings=torch.randn(L, D, generator=gen, dtype=torch.float64),
        text_embeddings_vd=torch.randn(4, L, D, generator=gen, dtype=torch.float64),
        uncond_text_embeddings_vd=torch.randn(4, L, D, generator=gen, dtype=torch.float64),
        directions=directions,
        direction2idx={d.name: i for i, d in enumerate(directions)},
        prompt="p",
        prompts_vd=[d.prompt for d in directions],
        use_perp_neg=use_perp_neg,
    )


def test_get_text_embeddings_cond_first_and_per_view() -> None:
    out = make_output()
    elevation = torch.tensor([0.0, 0.0, 0.0, 70.0])
    azimuth = torch.tensor([10.0, 90.0, 180.0, 0.0])
    emb = out.get_text_embeddings(elevation, azimuth, torch.ones(4))
    assert emb.shape == (8, L, D)
    views = [FRONT, SIDE, BACK, OVERHEAD]
    for i, v in enumerate(views):
        assert torch.equal(emb[i], out.text_embeddings_vd[v])
        assert torch.equal(emb[4 + i], out.uncond_text_embeddings_vd[v])


def test_get_text_embeddings_without_view_dependence() -> None:
    out = make_output()
    emb = out.get_text_embeddings(
        torch.tensor([0.0, 80.0]), torch.tensor([0.0, 180.0]), torch.ones(2), False
    )
    assert torch.equal(emb[0], out.text_embeddings) and torch.equal(emb[1], out.text_embeddings)
    assert torch.equal(emb[2], out.uncond_text_embeddings)
    assert torch.equal(emb[3], out.uncond_text_embeddings)


def f(params: tuple[float, float, float], r: float) -> float:
    a, b, c = params
    return a * math.exp(-b * r) + c


def test_perp_neg_embeddings_and_weights_match_hand_computation() -> None:
    out = make_output(use_perp_neg=True)
    vd, uvd = out.text_embeddings_vd, out.uncond_text_embeddings_vd
    cams = [  # (elevation, azimuth)
        (0.0, 30.0),  # front half, r = 2/3
        (0.0, -60.0),  # front half, r = 1/3
        (10.0, 120.0),  # back half, r = 2 - 120/90
        (0.0, 210.0),  # wraps to -150: back half, r = 2 - 150/90
        (0.0, 90.0),  # exactly 90: back half, r = 1 (pure side)
        (70.0, 30.0),  # overhead
    ]
    expected_pos, expected_neg, expected_w = [], [], []
    for elev, azi in cams:
        a = abs((azi + 180.0) % 360.0 - 180.0)
        if elev > 60.0:
            expected_pos.append(vd[OVERHEAD])
            expected_neg += [uvd[OVERHEAD], uvd[OVERHEAD]]
            expected_w.append([0.0, 0.0])
        elif a < 90.0:
            r = 1.0 - a / 90.0
            expected_pos.append(r * vd[FRONT] + (1 - r) * vd[SIDE])
            expected_neg += [vd[FRONT], vd[SIDE]]
            expected_w.append([-f(F_FS, r), -f(F_SF, 1 - r)])
        else:
            r = 2.0 - a / 90.0
            expected_pos.append(r * vd[SIDE] + (1 - r) * vd[BACK])
            expected_neg += [vd[SIDE], vd[FRONT]]
            expected_w.append([-f(F_SB, r), -f(F_FSB, r)])
    elevation = torch.tensor([c[0] for c in cams], dtype=torch.float64)
    azimuth = torch.tensor([c[1] for c in cams], dtype=torch.float64)
    emb, weights = out.get_text_embeddings_perp_neg(elevation, azimuth, torch.ones(6))
    b = len(cams)
    assert emb.shape == (4 * b, L, D) and weights.shape == (b, 2)
    index = out.direction_indices(elevation, azimuth, torch.ones(6))
    torch.testing.assert_close(emb[:b], torch.stack(expected_pos), rtol=0, atol=1e-12)
    torch.testing.assert_close(emb[b : 2 * b], uvd[index], rtol=0, atol=0)
    torch.testing.assert_close(emb[2 * b :], torch.stack(expected_neg), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        weights, torch.tensor(expected_w, dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert index.tolist() == [FRONT, SIDE, SIDE, BACK, SIDE, OVERHEAD]


def test_perp_neg_requires_view_dependent_prompting() -> None:
    out = make_output(use_perp_neg=True)
    with pytest.raises(ConfigError, match="view_dependent_prompting"):
        out.get_text_embeddings_perp_neg(torch.zeros(1), torch.zeros(1), torch.ones(1), False)
