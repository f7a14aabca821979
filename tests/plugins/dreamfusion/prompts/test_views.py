"""View-direction selection: every threshold boundary, azimuth wrap-around, prompt templates."""

from __future__ import annotations

import pytest
import torch

from studio_dreamfusion.prompts.views import (
    DIRECTION_NAMES,
    ViewThresholds,
    build_directions,
    direction_indices,
    shift_azimuth_deg,
)

# (elevation, azimuth, expected view) with the default thresholds front 45, back 45, overhead 60
CASES = [
    (0.0, 0.0, "front"),
    (0.0, 44.9, "front"),
    (0.0, 45.0, "side"),  # exactly +front_threshold: strict inequality
    (0.0, -45.0, "side"),  # exactly -front_threshold
    (0.0, -44.9, "front"),
    (0.0, 90.0, "side"),
    (0.0, -90.0, "side"),
    (0.0, 135.0, "side"),  # exactly 180 - back_threshold
    (0.0, 135.1, "back"),
    (0.0, -135.0, "side"),  # exactly -180 + back_threshold
    (0.0, -135.1, "back"),
    (0.0, 180.0, "back"),  # wraps to -180
    (0.0, -180.0, "back"),
    (0.0, 179.9, "back"),
    (0.0, 360.0, "front"),  # wraps to 0
    (0.0, -360.0, "front"),
    (0.0, 404.0, "front"),  # 44
    (0.0, 405.0, "side"),  # 45
    (0.0, 315.0, "side"),  # -45
    (0.0, 316.0, "front"),  # -44
    (0.0, 540.0, "back"),  # 180
    (0.0, 225.0, "side"),  # -135
    (0.0, 226.0, "side"),  # -134: back needs azimuth < -135
    (0.0, 224.0, "back"),  # -136
    (60.0, 0.0, "front"),  # exactly overhead_threshold: not overhead
    (60.1, 0.0, "overhead"),
    (60.1, 180.0, "overhead"),  # overhead overrides back
    (89.0, 90.0, "overhead"),
    (-30.0, 180.0, "back"),
    (-60.1, 0.0, "front"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_thresholds_table(dtype: torch.dtype) -> None:
    directions = build_directions("a cat", "", ViewThresholds())
    elevation = torch.tensor([c[0] for c in CASES], dtype=dtype)
    azimuth = torch.tensor([c[1] for c in CASES], dtype=dtype)
    index = direction_indices(directions, elevation, azimuth, torch.ones_like(elevation))
    got = [DIRECTION_NAMES[i] for i in index.tolist()]
    expected = [c[2] for c in CASES]
    wrong = [(c[0], c[1], g, e) for c, g, e in zip(CASES, got, expected, strict=True) if g != e]
    assert not wrong, f"(elev, azi, got, expected): {wrong}"


def test_custom_thresholds() -> None:
    directions = build_directions("x", "", ViewThresholds(front=30.0, back=60.0, overhead=30.0))
    table = [
        (0.0, 29.0, "front"),
        (0.0, 30.0, "side"),
        (0.0, 120.0, "side"),  # exactly 180 - 60
        (0.0, 121.0, "back"),
        (0.0, -121.0, "back"),
        (30.0, 0.0, "front"),
        (31.0, 100.0, "overhead"),
    ]
    elevation = torch.tensor([r[0] for r in table])
    azimuth = torch.tensor([r[1] for r in table])
    index = direction_indices(directions, elevation, azimuth, torch.ones_like(elevation))
    assert [DIRECTION_NAMES[i] for i in index.tolist()] == [r[2] for r in table]


def test_shift_azimuth_wraps_into_half_open_interval() -> None:
    azimuth = torch.tensor([-540.0, -190.0, -180.0, 0.0, 179.0, 180.0, 190.0, 360.0, 725.0])
    expected = torch.tensor([-180.0, 170.0, -180.0, 0.0, 179.0, -180.0, -170.0, 0.0, 5.0])
    assert torch.equal(shift_azimuth_deg(azimuth), expected)


def test_prompt_templates_both_styles() -> None:
    default = [d.prompt for d in build_directions("a cat", "ugly", ViewThresholds())]
    assert default == [
        "a cat, side view",
        "a cat, front view",
        "a cat, back view",
        "a cat, overhead view",
    ]
    front = [d.prompt for d in build_directions("a cat", "", ViewThresholds(), front_style=True)]
    assert front == [
        "side view of a cat",
        "front view of a cat",
        "backside view of a cat",
        "overhead view of a cat",
    ]
    negatives = [d.negative_prompt for d in build_directions("a cat", "ugly", ViewThresholds())]
    assert negatives == ["ugly"] * 4


def test_manual_view_prompts_override_templates() -> None:
    manual = {"front": "a cat's face", "overhead": "top of a cat's head", "side": None}
    prompts = [
        d.prompt
        for d in build_directions("a cat", "", ViewThresholds(), front_style=True, manual=manual)
    ]
    assert prompts == [
        "side view of a cat",
        "a cat's face",
        "backside view of a cat",
        "top of a cat's head",
    ]
