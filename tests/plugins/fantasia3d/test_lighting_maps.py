"""Environment maps: the equirectangular convention, the procedural sky, and loading files."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from studio.api import ConfigError
from studio_fantasia3d.lighting import EnvironmentLight, SkyParams
from studio_fantasia3d.lighting.environment import STUDIO, procedural_sky, sky_radiance
from studio_fantasia3d.lighting.equirect import direction_to_uv, row_solid_angles, texel_directions
from tests.plugins.fantasia3d.lighting_cache import private_cache  # noqa: F401 - fixture


def _map(light: EnvironmentLight) -> torch.Tensor:
    """The light's radiance map as ``[H, W, 3]`` (its lookup texture without the wrap columns
    and the pole rows)."""
    return light.radiance_map[0, :, 1:-1, 1:-1].permute(1, 2, 0)


def _power(image: torch.Tensor) -> torch.Tensor:
    """``sum L dw`` per channel of an ``[H, W, 3]`` map."""
    weight = row_solid_angles(image.shape[0], image.shape[1])[:, None, None]
    return (image.double() * weight).sum(dim=(0, 1))


def test_mapping_convention() -> None:
    """Row 0 is the zenith, the middle the horizon; u = 0.5 - atan2(y, x) / 2 pi, so the centre
    column faces +x, a quarter across +y, three quarters -y; texel centres map back to themselves."""
    axes = torch.tensor(
        [[0.0, 0, 1], [0, 0, -1], [1, 0, 0], [0, 1, 0], [0, -1, 0], [-1, 0, 1e-9]],
        dtype=torch.float64,
    )
    uv = direction_to_uv(axes)
    assert torch.allclose(uv[:, 1], torch.tensor([0.0, 1, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(uv[2:5, 0], torch.tensor([0.5, 0.25, 0.75], dtype=torch.float64))
    assert uv[5, 0] in (0.0, 1.0)
    directions = texel_directions(8, 16)
    uv = direction_to_uv(directions)
    rows, columns = torch.meshgrid(torch.arange(8), torch.arange(16), indexing="ij")
    assert torch.allclose(uv[..., 0], (columns.double() + 0.5) / 16)
    assert torch.allclose(uv[..., 1], (rows.double() + 0.5) / 8)
    assert torch.isclose(
        row_solid_angles(8, 16).sum() * 16, torch.tensor(4 * math.pi, dtype=torch.float64)
    )


def test_sky_looks_like_a_sky() -> None:
    """Deterministic; blue zenith, brighter horizon, darker ground; an HDR sun (radiance ~240 x
    the scale) where SkyParams puts it, carrying its exact power through the anti-aliasing."""
    params = SkyParams()
    light = EnvironmentLight.from_source("sky", 2.0)
    image = _map(light)
    assert torch.equal(procedural_sky(128), procedural_sky(128))
    assert torch.allclose(image, 2.0 * procedural_sky(128))

    def radiance(direction: tuple[float, float, float]) -> torch.Tensor:
        return light.radiance(torch.tensor([direction]))[0]

    zenith, horizon, ground = radiance((0, 0, 1)), radiance((-1, 0, 0.02)), radiance((-1, 0, -0.5))
    assert zenith[2] > zenith[0] and horizon.sum() > zenith.sum() > ground.sum() > 0
    sun = radiance(params.sun_direction())
    assert sun.min() > 200 and image.max() <= 2 * max(params.sun_radiance) + 1e-3
    assert light.radiance(-torch.tensor([params.sun_direction()])).max() < 2
    disc = 2 * math.pi * (1 - math.cos(math.radians(params.sun_radius_deg)))
    extra = _power(procedural_sky(128, params)) - _power(procedural_sky(128, SkyParams(sun=False)))
    behind = sky_radiance(
        torch.tensor(params.sun_direction(), dtype=torch.float64), SkyParams(sun=False)
    )
    expected = (torch.tensor(params.sun_radiance, dtype=torch.float64) - behind) * disc
    assert torch.allclose(extra, expected, rtol=0.02), (extra, expected)


def test_the_studio_shades_a_white_lambertian_surface_as_the_primitives_data_set() -> None:
    light = EnvironmentLight.from_source("studio", 1.0)
    sun = torch.tensor(STUDIO.sun_direction())
    side = torch.nn.functional.normalize(
        torch.cross(sun, torch.tensor([0.0, 0.0, 1.0]), dim=0), dim=0
    )
    up = torch.cross(side, sun, dim=0)
    angles = torch.deg2rad(torch.arange(0.0, 181.0, 15.0))
    normals = sun * angles.cos()[:, None] + up * angles.sin()[:, None]
    expected = 0.25 + 0.75 * angles.cos().clamp_min(0.0)
    irradiance = light.diffuse(normals.float())  # E(n) / pi: what albedo 1 reflects
    assert torch.allclose(irradiance, expected[:, None].float().expand(-1, 3), atol=0.012)
    assert torch.allclose(_map(light).amin(), torch.tensor(0.25))  # grey, white, no tint
    assert torch.allclose(_power(_map(light))[0], _power(_map(light))[2])


def test_scale_multiplies_the_radiance_and_the_light_has_no_parameters() -> None:
    one, two = EnvironmentLight.from_source("sky"), EnvironmentLight.from_source("sky", 2.0)
    for (name, a), (_, b) in zip(one.named_buffers(), two.named_buffers(), strict=True):
        assert torch.allclose(2 * a, b, rtol=1e-5), name
    assert list(two.parameters()) == [] and two.state_dict() == {}
    assert two.double().specular_0.dtype == torch.float64


def _write_hdr(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1], dtype=np.float32))


def test_hdr_round_trips(tmp_path: Path) -> None:
    """A Radiance .hdr written by OpenCV reads back as RGB in the map's layout (row 0 at the
    zenith, column j at u = (j + 0.5) / W), to RGBE precision (8-bit mantissas), times scale."""
    rng = np.random.default_rng(0)
    rgb = np.exp(rng.uniform(-3, 3, size=(16, 32, 3))).astype(np.float32)
    rgb[3, 5] = (40.0, 2.0, 0.5)  # a bright, strongly coloured texel
    path = tmp_path / "studio.hdr"
    _write_hdr(path, rgb)
    light = EnvironmentLight.from_source(str(path), 3.0, resolution=32)
    # RGBE keeps 8 mantissa bits under the pixel's largest channel's power of two: one step
    # is at most 2 * max / 256, for every channel of the pixel
    step = 3.0 * 2 * rgb.max(-1, keepdims=True) / 256
    assert (np.abs(_map(light).numpy() - 3.0 * rgb) <= step).all()
    direction = texel_directions(16, 32)[3, 5].float()
    assert (
        np.abs(light.radiance(direction[None])[0].numpy() - 3.0 * rgb[3, 5]) <= step[3, 5]
    ).all()


def test_large_files_are_shrunk_keeping_their_power(tmp_path: Path) -> None:
    """A 128 x 256 panorama at resolution 64: solid-angle-weighted area averaging keeps the
    map's radiant power (a small bright spot included) to 1 %."""
    fine = (0.2 + 0.1 * texel_directions(128, 256)[..., 2:3].abs()).expand(-1, -1, 3).clone()
    fine[40:42, 100:102] = 500.0
    path = tmp_path / "spot.hdr"
    _write_hdr(path, fine.numpy())
    light = EnvironmentLight.from_source(str(path), resolution=64)
    assert _map(light).shape == (32, 64, 3)
    assert torch.allclose(_power(_map(light)), _power(fine), rtol=1e-2)


def _refused(source: str, *needles: str) -> str:
    with pytest.raises(ConfigError) as caught:
        EnvironmentLight.from_source(source)
    message = str(caught.value)
    assert "\n" not in message
    for needle in (source, *needles):
        assert needle in message, (needle, message)
    return message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    _refused(str(tmp_path / "nowhere" / "studio.hdr"), "does not exist", ".exr", "sky")


def test_unsupported_extension_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "panorama.png"
    cv2.imwrite(str(path), np.zeros((8, 16, 3), np.uint8))
    _refused(str(path), ".png", ".hdr", ".exr")
    _refused(str(tmp_path / "missing.jpg"), ".jpg", ".hdr")


def test_unreadable_and_misshapen_files_are_config_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.hdr"
    garbage.write_bytes(b"#?RADIANCE\nnot really an image\n")
    _refused(str(garbage), "could not be read")
    square = tmp_path / "square.hdr"
    _write_hdr(square, np.ones((16, 16, 3), np.float32))
    _refused(str(square), "16x16", "twice as wide")
    with pytest.raises(ConfigError, match="power of two"):
        EnvironmentLight.from_source("sky", resolution=100)


@pytest.mark.skipif(importlib.util.find_spec("OpenEXR") is not None, reason="OpenEXR installed")
def test_exr_without_a_reader_names_what_to_install(tmp_path: Path) -> None:
    """This OpenCV has no OpenEXR codec; without the OpenEXR package, .exr is refused with the fix."""
    path = tmp_path / "studio.exr"
    path.write_bytes(b"v/1\x01 not an exr written by a real writer")
    _refused(str(path), "pip install OpenEXR", ".hdr")


@pytest.mark.skipif(importlib.util.find_spec("OpenEXR") is None, reason="OpenEXR not installed")
def test_exr_round_trips(tmp_path: Path) -> None:
    """With the optional OpenEXR package, a float32 RGB .exr reads back exactly."""
    import OpenEXR

    rgb = np.random.default_rng(0).uniform(0, 20, size=(16, 32, 3)).astype(np.float32)
    path = tmp_path / "studio.exr"
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"RGB": rgb}) as exr:
        exr.write(str(path))
    light = EnvironmentLight.from_source(str(path), resolution=32)
    assert np.allclose(_map(light).numpy(), rgb)


def test_lookups_are_continuous_with_bounded_gradients_at_the_poles() -> None:
    """Approaching the zenith from any azimuth gives the same value, and the gradient w.r.t. the
    direction stays bounded (the map's azimuth is singular there, the lookup is not)."""
    light = EnvironmentLight.from_source("sky", 2.0)
    for pole in (1.0, -1.0):
        values, norms = [], []
        for theta in (1e-2, 1e-4, 1e-6, 0.0):
            for phi in (0.3, 2.0, 4.5):
                direction = torch.tensor(
                    [[math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), pole]],
                    requires_grad=True,
                )
                value = light.diffuse(direction) + light.specular(direction, torch.tensor([[0.3]]))
                value.sum().backward()
                values.append(value.detach())
                norms.append(direction.grad.norm().item())
        spread = (torch.cat(values[3:]) - values[-1]).abs().max().item()
        assert spread < 1e-3 * values[-1].max().item(), spread
        assert max(norms) < 10 and all(math.isfinite(n) for n in norms), norms
