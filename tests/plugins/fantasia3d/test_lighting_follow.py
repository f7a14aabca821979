"""An environment that follows each view's light: the rotation, the key direction, and the
material shading as under the environment turned per view."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from studio.api import StudioError
from studio_fantasia3d.lighting import EnvironmentLight, SkyParams
from studio_fantasia3d.lighting.equirect import texel_directions
from studio_fantasia3d.lighting.follow import fibonacci_directions, key_direction, rotate_onto
from studio_fantasia3d.materials.pbr import PBRMaterial
from tests.plugins.fantasia3d.lighting_cache import private_cache  # noqa: F401 - fixture


def unit(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, 3, generator=generator, dtype=torch.float64), dim=-1)


def test_rotate_onto_takes_source_to_target_and_keeps_lengths_and_angles() -> None:
    source, target, x = unit(64, seed=0), unit(64, seed=1), torch.randn(64, 3, dtype=torch.float64)
    assert torch.allclose(rotate_onto(source, target, source), target, atol=1e-12)
    turned = rotate_onto(source, target, x)
    assert torch.allclose(turned.norm(dim=-1), x.norm(dim=-1), atol=1e-12)
    # angles to the source become angles to the target; the axis source x target stays put
    assert torch.allclose((turned * target).sum(-1), (x * source).sum(-1), atol=1e-12)
    axis = torch.cross(source, target, dim=-1)
    assert torch.allclose(rotate_onto(source, target, axis), axis, atol=1e-12)
    # a right-handed rotation: the determinant of the turned frame stays +1
    frame = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    turned_frame = rotate_onto(source[:, None], target[:, None], frame)
    assert torch.allclose(torch.linalg.det(turned_frame), torch.ones(64, dtype=torch.float64))


def test_rotate_onto_turns_opposite_vectors_half_way_round() -> None:
    source = unit(16, seed=2)
    x = torch.randn(16, 3, dtype=torch.float64)
    turned = rotate_onto(source, -source, x)
    assert torch.allclose(rotate_onto(source, -source, source), -source, atol=1e-12)
    assert torch.allclose(turned.norm(dim=-1), x.norm(dim=-1), atol=1e-12)
    assert torch.allclose((turned * -source).sum(-1), (x * source).sum(-1), atol=1e-12)


def test_fibonacci_directions_cover_the_sphere_evenly() -> None:
    directions = fibonacci_directions(4096)
    assert torch.allclose(directions.norm(dim=-1), torch.ones(4096, dtype=torch.float64))
    assert directions.mean(0).abs().max() < 1e-3  # no side favoured
    assert torch.allclose(
        (directions**2).mean(0), torch.full((3,), 1 / 3, dtype=torch.float64), atol=2e-3
    )


def test_the_key_direction_points_at_a_single_bright_spot_and_near_the_sun() -> None:
    height = 32
    spot = torch.tensor([0.3, -0.5, 0.81], dtype=torch.float64)
    spot = spot / spot.norm()
    directions = texel_directions(height, 2 * height)
    radiance = torch.full((height, 2 * height, 3), 0.01, dtype=torch.float64)
    nearest = (directions @ spot).flatten().argmax()
    radiance.view(-1, 3)[nearest] = 500.0
    key = key_direction(EnvironmentLight(radiance.float()))
    texel = directions.reshape(-1, 3)[nearest].float()
    assert math.degrees(math.acos(float((key * texel).sum().clamp(-1, 1)))) < 3.0
    sky = key_direction(EnvironmentLight.from_source("sky", 2.0))
    sun = torch.tensor(SkyParams().sun_direction(), dtype=torch.float32)
    assert math.degrees(math.acos(float((sky * sun).sum()))) < 15.0
    studio = key_direction(EnvironmentLight.from_source("studio", 1.0))
    assert math.degrees(math.acos(float((studio * sun).sum().clamp(-1, 1)))) < 0.5
    uniform = key_direction(EnvironmentLight(torch.ones(height, 2 * height, 3)))
    assert torch.equal(uniform, torch.tensor([0.0, 0.0, 1.0]))


def material(follows: bool) -> PBRMaterial:
    return PBRMaterial(
        {"use_bump": False, "environment_follows_light": follows, "lut_resolution": 32}
    )


def test_a_following_environment_shades_as_the_environment_turned_per_view() -> None:
    torch.manual_seed(0)
    features = torch.randn(8, 8)
    normal, viewdirs = unit(8, seed=3).float(), unit(8, seed=4).float()
    fixed, follows = material(False), material(True)
    key = follows.key(torch.device("cpu"))
    # a light along the key direction turns nothing
    lights = 2.5 * key.expand(8, 3)
    same = follows(features, viewdirs, shading_normal=normal, light_positions=lights)
    assert torch.allclose(same, fixed(features, viewdirs, shading_normal=normal), atol=1e-6)
    # any other light: the fixed environment seen with the normal and view turned onto the key
    lights = 3.0 * unit(8, seed=5).float()
    light_dir = F.normalize(lights, dim=-1)
    turned = fixed(
        features,
        rotate_onto(light_dir, key, viewdirs),
        shading_normal=rotate_onto(light_dir, key, normal),
    )
    shaded = follows(features, viewdirs, shading_normal=normal, light_positions=lights)
    assert torch.allclose(shaded, turned, atol=1e-6)
    assert not torch.allclose(shaded, fixed(features, viewdirs, shading_normal=normal), atol=1e-3)
    # a surface facing its light is lit as one facing the key: brighter than facing away
    facing = follows(features, -light_dir, shading_normal=light_dir, light_positions=lights)
    away = follows(features, light_dir, shading_normal=-light_dir, light_positions=lights)
    assert (facing.mean(-1) > away.mean(-1)).all()


def test_a_following_environment_without_lights_names_the_fix() -> None:
    with pytest.raises(StudioError, match="environment_follows_light=false"):
        material(True)(
            torch.zeros(2, 8), unit(2, seed=6).float(), shading_normal=unit(2, seed=7).float()
        )
