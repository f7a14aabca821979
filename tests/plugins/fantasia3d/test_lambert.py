"""The geometry stage's Lambertian guidance input."""

from __future__ import annotations

import torch

from studio_fantasia3d.lambert import MIN_BACKGROUND_DISTANCE, lambert_render, random_backgrounds

UP = torch.tensor([0.5, 0.5, 1.0])  # (n + 1) / 2 of the normal +z
ALBEDO = torch.tensor([1.0, 0.5, 0.0])


def flat_patch() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 view of an upward-facing surface, its last pixel background."""
    comp_normal = UP.expand(1, 2, 2, 3).clone()
    opacity = torch.tensor([1.0, 1.0, 1.0, 0.0]).reshape(1, 2, 2, 1)
    return comp_normal, opacity


def test_a_distant_light_shades_one_colour_over_grey() -> None:
    comp_normal, opacity = flat_patch()
    overhead = lambert_render(comp_normal, opacity, torch.tensor([[0.0, 0.0, 5.0]]), ALBEDO)
    assert torch.allclose(overhead[0, 0, 0], ALBEDO)  # ambient 0.25 + diffuse 0.75 * 1
    assert torch.allclose(overhead[0, 1, 1], torch.full((3,), 0.5))  # the grey background
    sideways = lambert_render(comp_normal, opacity, torch.tensor([[3.0, 0.0, 0.0]]), ALBEDO)
    assert torch.allclose(sideways[0, 0, 0], 0.25 * ALBEDO)  # ambient only


def test_a_point_light_shades_by_the_direction_from_each_surface_point() -> None:
    comp_normal, opacity = flat_patch()
    positions = torch.zeros(1, 2, 2, 3)
    positions[0, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # the light is at 45 degrees from here
    light = torch.tensor([[0.0, 0.0, 1.0]])
    image = lambert_render(comp_normal, opacity, light, ALBEDO, positions=positions)
    assert torch.allclose(image[0, 0, 0], ALBEDO)  # straight below the light
    cos45 = 2.0**-0.5
    assert torch.allclose(image[0, 0, 1], ALBEDO * (0.25 + 0.75 * cos45))
    distant = lambert_render(comp_normal, opacity, light, ALBEDO)
    assert torch.allclose(distant[0, 0, 1], ALBEDO)  # a distant light ignores the point


def test_a_given_background_fills_each_view_where_nothing_is_drawn() -> None:
    comp_normal, opacity = flat_patch()
    comp_normal, opacity = comp_normal.expand(2, -1, -1, -1), opacity.expand(2, -1, -1, -1)
    background = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])
    light = torch.tensor([[0.0, 0.0, 5.0]]).expand(2, 3)
    image = lambert_render(comp_normal, opacity, light, ALBEDO, background=background)
    assert torch.allclose(image[:, 1, 1], background)
    assert torch.allclose(image[:, 0, 0], ALBEDO.expand(2, 3))


def test_random_backgrounds_keep_away_from_the_albedo_and_vary() -> None:
    torch.manual_seed(0)
    albedo = torch.tensor([0.5, 0.5, 0.5], requires_grad=True)
    backgrounds = random_backgrounds(albedo, 4096)
    assert backgrounds.shape == (4096, 3) and not backgrounds.requires_grad
    assert ((backgrounds - albedo.detach()).norm(dim=-1) >= MIN_BACKGROUND_DISTANCE).all()
    assert backgrounds.min() >= 0 and backgrounds.max() <= 1
    # uniform over the cube less a ball: each channel's mean near 0.5, spread over [0, 1]
    assert torch.allclose(backgrounds.mean(0), torch.full((3,), 0.5), atol=0.03)
    assert backgrounds.std(0).min() > 0.25
