"""Environment maps: the procedural default sky and equirectangular HDR files.

Both give a linear-radiance ``[H, W, 3]`` float32 tensor in the layout of
:mod:`studio_fantasia3d.lighting.equirect` (z up, row 0 at the zenith, ``W = 2 H``).

The sky (:class:`SkyParams`, all parameters there) is an analytic function of the direction:

* above the horizon (``z >= 0``): ``zenith + (horizon - zenith) * exp(-z / horizon_falloff)``, a
  bright horizon fading to a blue zenith;
* below it: ``ground + (horizon - ground) * exp(z / ground_falloff)``, darker ground that meets the
  horizon colour continuously;
* plus a sun: a disc of angular radius ``sun_radius_deg`` and radiance ``sun_radiance`` (well
  above 1, so it casts a visible highlight and a directional shading term) at ``sun_elevation_deg``
  above the horizon and azimuth ``sun_azimuth_deg`` (``atan2(y, x)``, counter-clockwise from +x).

It is rendered at ``supersample``-times the resolution and averaged by solid angle, so the sun's
disc is anti-aliased and carries its exact power ``sun_radiance * 2 pi (1 - cos radius)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from studio.api import ConfigError, one_line
from studio_fantasia3d.lighting.equirect import downsample, texel_directions

#: the file types :func:`load_equirect` reads
SUPPORTED_EXTENSIONS = (".hdr", ".exr")


@dataclass(frozen=True)
class SkyParams:
    """The default sky's look (linear RGB radiance; see the module docstring for the formulas).

    At ``environment_scale`` 1 a white Lambertian surface facing up reflects about
    ``(0.6, 0.7, 0.8)``, one facing the sun ``(0.8, 0.8, 0.9)``, one facing away from it
    ``(0.3, 0.35, 0.4)`` (the sun adds about as much as the whole sky, from one direction)."""

    zenith: tuple[float, float, float] = (0.26, 0.34, 0.50)
    """Radiance straight up (blue)."""
    horizon: tuple[float, float, float] = (0.64, 0.66, 0.70)
    """Radiance at the horizon (bright, nearly white)."""
    ground: tuple[float, float, float] = (0.20, 0.18, 0.16)
    """Radiance from below, well under the horizon (dark, warm)."""
    horizon_falloff: float = 0.25
    """How fast (in ``z``) the horizon colour gives way to the zenith's."""
    ground_falloff: float = 0.10
    """How fast (in ``-z``) the horizon colour gives way to the ground's."""
    sun: bool = True
    """Whether the sun is drawn (off: only the smooth gradient)."""
    sun_radiance: tuple[float, float, float] = (240.0, 228.0, 205.0)
    """The sun disc's radiance (warm white, HDR)."""
    sun_radius_deg: float = 2.5
    """Angular radius of the disc (the real sun's is 0.27 deg; this one spans ~3.5 texels of the
    default 256 x 128 map, so it is resolved rather than aliased)."""
    sun_elevation_deg: float = 45.0
    """The sun's height above the horizon."""
    sun_azimuth_deg: float = 30.0
    """The sun's azimuth ``atan2(y, x)``, counter-clockwise from +x seen from above."""

    def sun_direction(self) -> tuple[float, float, float]:
        """The unit direction towards the sun's centre."""
        elevation = math.radians(self.sun_elevation_deg)
        azimuth = math.radians(self.sun_azimuth_deg)
        return (
            math.cos(elevation) * math.cos(azimuth),
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
        )


def _studio_params() -> SkyParams:
    """:data:`STUDIO`'s parameters: the sun's radiance is ``0.75 pi / solid angle`` of its disc."""
    radius = SkyParams.sun_radius_deg
    solid_angle = 2.0 * math.pi * (1.0 - math.cos(math.radians(radius)))
    sun = 0.75 * math.pi / solid_angle
    grey = (AMBIENT_STUDIO,) * 3
    return SkyParams(
        zenith=grey, horizon=grey, ground=grey, sun_radiance=(sun,) * 3, sun_radius_deg=radius
    )


#: The studio's uniform radiance (a white Lambertian surface reflects this much of it).
AMBIENT_STUDIO = 0.25
#: ``environment_texture: studio``: a uniform grey ambient of radiance 0.25 and a white sun of
#: irradiance 0.75 pi along its direction, so a white Lambertian surface reflects ``0.25 + 0.75
#: max(0, n . s)``: the Lambert shading the primitives data set renders (with
#: ``environment_follows_light`` the sun follows each view's light as that data set's does).
STUDIO = _studio_params()


def sky_radiance(direction: Tensor, params: SkyParams = SkyParams()) -> Tensor:
    """The analytic sky's radiance along unit ``direction [..., 3]`` -> ``[..., 3]``."""
    dtype, device = direction.dtype, direction.device

    def colour(value: tuple[float, float, float]) -> Tensor:
        return torch.tensor(value, dtype=dtype, device=device)

    z = direction[..., 2:3]
    horizon = colour(params.horizon)
    up = colour(params.zenith) + (horizon - colour(params.zenith)) * torch.exp(
        -z.clamp_min(0.0) / params.horizon_falloff
    )
    down = colour(params.ground) + (horizon - colour(params.ground)) * torch.exp(
        z.clamp_max(0.0) / params.ground_falloff
    )
    radiance = torch.where(z >= 0, up, down)
    if params.sun:
        cos_to_sun = (direction * colour(params.sun_direction())).sum(-1, keepdim=True)
        in_disc = cos_to_sun >= math.cos(math.radians(params.sun_radius_deg))
        radiance = torch.where(in_disc, colour(params.sun_radiance), radiance)
    return radiance


def procedural_sky(height: int, params: SkyParams = SkyParams(), *, supersample: int = 4) -> Tensor:
    """The sky as an ``[height, 2 height, 3]`` float32 map, ``supersample**2`` rays per texel."""
    fine = texel_directions(height * supersample, 2 * height * supersample)
    return downsample(sky_radiance(fine, params), supersample).float()


def load_equirect(path: Path) -> np.ndarray:
    """Read an equirectangular ``.hdr`` (Radiance RGBE) or ``.exr`` file as linear RGB float32
    ``[H, W, 3]``; every problem with the file is a :class:`ConfigError` naming it."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ConfigError(
            f"environment map {path}: unsupported file type {path.suffix or '(none)'!r}; use an "
            f"equirectangular {' or '.join(SUPPORTED_EXTENSIONS)} file, or 'sky' for the built-in sky."
        )
    if not path.is_file():
        raise ConfigError(
            f"environment map {path} does not exist (or is not a file); give the path of an "
            "equirectangular .hdr or .exr file, or 'sky' for the built-in sky."
        )
    image = _read_exr(path) if suffix == ".exr" else _read_hdr(path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ConfigError(f"environment map {path} has shape {image.shape}; expected an RGB image.")
    image = np.ascontiguousarray(image[..., :3], dtype=np.float32)
    height, width = image.shape[:2]
    if abs(width - 2 * height) > max(1, 0.01 * width):
        raise ConfigError(
            f"environment map {path} is {width}x{height} pixels; an equirectangular map is twice "
            "as wide as high (e.g. 2048x1024). Convert it to a latitude-longitude panorama."
        )
    if not np.isfinite(image).all():
        raise ConfigError(
            f"environment map {path} contains NaN or infinite values; re-export it with finite "
            "radiance."
        )
    return np.maximum(image, 0.0)


def _read_hdr(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ConfigError(
            f"environment map {path} could not be read as a Radiance .hdr (RGBE) image; check "
            "that the file is complete and really an .hdr, or convert it with an image editor."
        )
    image = image.astype(np.float32)
    return image[..., 2::-1] if image.ndim == 3 else image  # BGR(A) -> RGB


def _read_exr(path: Path) -> np.ndarray:
    try:
        import OpenEXR
    except ImportError:
        OpenEXR = None
    if OpenEXR is not None:
        return _read_exr_openexr(OpenEXR, path)
    # OpenCV reads EXR only when built with OpenEXR and asked to before it is imported
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    image = None
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None:
        raise ConfigError(
            f"environment map {path}: reading .exr files needs the OpenEXR package, which is not "
            "installed (pip install OpenEXR), or convert the map to a Radiance .hdr file."
        )
    image = image.astype(np.float32)
    return image[..., 2::-1] if image.ndim == 3 else image


def _read_exr_openexr(openexr: object, path: Path) -> np.ndarray:
    try:
        with openexr.File(str(path)) as exr:  # type: ignore[attr-defined]
            channels = exr.channels()
            for name in ("RGB", "RGBA"):
                if name in channels:
                    return np.asarray(channels[name].pixels, dtype=np.float32)
            if all(c in channels for c in "RGB"):
                return np.stack([np.asarray(channels[c].pixels) for c in "RGB"], axis=-1)
            if "Y" in channels:
                return np.asarray(channels["Y"].pixels, dtype=np.float32)
            found = ", ".join(sorted(channels)) or "none"
    except Exception as exc:  # the library raises plain exceptions for bad files
        raise ConfigError(
            f"environment map {path} could not be read as an OpenEXR image ({one_line(exc)}); "
            "check that the file is complete and really an .exr."
        ) from exc
    raise ConfigError(
        f"environment map {path} has no RGB channels (found: {found}); export the panorama with "
        "R, G and B channels."
    )


def resample(image: np.ndarray, height: int) -> Tensor:
    """``image [h, w, 3]`` resized to ``[height, 2 height, 3]`` by solid-angle-weighted area
    averaging (bilinear when enlarging), so shrinking a large panorama keeps the sun's power."""
    import cv2

    width = 2 * height
    if image.shape[:2] == (height, width):
        return torch.from_numpy(image.copy())
    rows = image.shape[0]
    weight = np.sin((np.arange(rows, dtype=np.float64) + 0.5) * math.pi / rows).astype(np.float32)
    interpolation = cv2.INTER_AREA if rows >= height else cv2.INTER_LINEAR
    weighted = cv2.resize(
        image * weight[:, None, None], (width, height), interpolation=interpolation
    )
    norm = cv2.resize(
        np.repeat(weight[:, None], image.shape[1], axis=1),
        (width, height),
        interpolation=interpolation,
    )
    return torch.from_numpy(weighted / np.maximum(norm, 1e-12)[..., None]).float()
