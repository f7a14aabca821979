"""The image-based light: an environment map with its diffuse and specular prefiltered maps.

:class:`EnvironmentLight` keeps, as buffers (no trainable parameters; ``.to(device)`` moves them;
not saved in checkpoints, the light is rebuilt from its source):

* the radiance map itself (``resolution x resolution / 2``), read by :meth:`radiance`;
* the irradiance map ``E / pi`` (a convolved ``irradiance_resolution`` map, not spherical
  harmonics: exact up to the texel quadrature, which the tests measure), read by :meth:`diffuse`;
* one GGX-prefiltered map per entry of ``roughness_levels`` (each at its own resolution, see
  :func:`~studio_fantasia3d.lighting.prefilter.level_width`), read by :meth:`specular`, which
  interpolates bilinearly in direction and linearly in roughness between the two nearest levels
  (roughness outside the levels' range is clamped to it).

Prefiltering happens once, at construction, on the CPU in float64; :meth:`from_source` also keeps
the last few results in memory, so building the same light again is free.
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from studio.api import ConfigError
from studio_fantasia3d.lighting.environment import (
    STUDIO,
    SkyParams,
    load_equirect,
    procedural_sky,
    resample,
)
from studio_fantasia3d.lighting.equirect import direction_to_uv, lookup, lookup_uv, pad_for_lookup
from studio_fantasia3d.lighting.prefilter import irradiance_map, specular_levels

#: roughness of the prefiltered specular maps; the reference material's roughness is in [0.08, 0.9]
DEFAULT_ROUGHNESS_LEVELS = (0.08, 0.12, 0.17, 0.23, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0)


class EnvironmentLight(nn.Module):
    """Distant lighting from an equirectangular radiance map (z up), prefiltered for split-sum
    shading. Build it with :meth:`from_source` or directly from a ``[H, 2H, 3]`` map tensor."""

    def __init__(
        self,
        radiance_map: Tensor,
        *,
        roughness_levels: tuple[float, ...] = DEFAULT_ROUGHNESS_LEVELS,
        irradiance_resolution: int = 128,
    ) -> None:
        super().__init__()
        height, width = radiance_map.shape[:2]
        _check_width(width, "radiance map width")
        _check_width(irradiance_resolution, "irradiance_resolution")
        if radiance_map.shape != (height, 2 * height, 3):
            raise ConfigError(f"an environment map is [H, 2H, 3]; got {tuple(radiance_map.shape)}.")
        levels = tuple(float(r) for r in roughness_levels)
        if not levels or any(b <= a for a, b in itertools.pairwise(levels)):
            raise ConfigError(f"roughness_levels must increase strictly; got {levels}.")
        if levels[0] <= 0 or levels[-1] > 1:
            raise ConfigError(f"roughness_levels must lie in (0, 1]; got {levels}.")
        image = radiance_map.detach().to("cpu", torch.float64)
        self.roughness_levels = levels
        self.register_buffer("radiance_map", pad_for_lookup(image.float()), persistent=False)
        irradiance = irradiance_map(image, min(irradiance_resolution, width))
        self.register_buffer("irradiance", pad_for_lookup(irradiance.float()), persistent=False)
        for index, level in enumerate(specular_levels(image, levels)):
            self.register_buffer(
                f"specular_{index}", pad_for_lookup(level.float()), persistent=False
            )

    @classmethod
    def from_source(
        cls,
        source: str,
        scale: float = 1.0,
        *,
        resolution: int = 256,
        roughness_levels: tuple[float, ...] = DEFAULT_ROUGHNESS_LEVELS,
        irradiance_resolution: int = 128,
        sky: SkyParams | None = None,
        device: torch.device | str | None = None,
    ) -> EnvironmentLight:
        """The light of ``source``: ``"sky"`` (the procedural sky, see ``sky``), ``"studio"`` (the
        grey studio with a sun, ``environment.STUDIO``) or the path of an equirectangular
        ``.hdr``/``.exr`` file, resized to ``resolution x resolution / 2`` texels (a power of two
        >= 32) and multiplied by ``scale``. Bad files raise ConfigError."""
        _check_width(resolution, "environment resolution")
        if not math.isfinite(scale) or scale < 0:
            raise ConfigError(f"environment scale must be a finite number >= 0; got {scale}.")
        key = _source_key(source, sky)
        maps = _prefiltered(
            key, float(scale), resolution, tuple(roughness_levels), irradiance_resolution
        )
        light = cls.__new__(cls)
        nn.Module.__init__(light)
        light.roughness_levels = tuple(float(r) for r in roughness_levels)
        for name, tensor in maps.items():  # copies: the memoised tensors stay untouched
            light.register_buffer(name, tensor.clone(), persistent=False)
        return light if device is None else light.to(device)

    @property
    def levels(self) -> list[Tensor]:
        """The specular maps in ``roughness_levels`` order (padded lookup textures)."""
        return [getattr(self, f"specular_{i}") for i in range(len(self.roughness_levels))]

    def radiance(self, direction: Tensor) -> Tensor:
        """The map's radiance along ``direction [..., 3]`` (bilinear) -> ``[..., 3]``."""
        return lookup(self.radiance_map, direction)

    def diffuse(self, normal: Tensor) -> Tensor:
        """``E(n) / pi = (1 / pi) int L(l) max(n.l, 0) dl``: what a white Lambertian surface with
        normal ``normal [..., 3]`` reflects -> ``[..., 3]``."""
        return lookup(self.irradiance, normal)

    def specular(self, direction: Tensor, roughness: Tensor) -> Tensor:
        """The GGX-prefiltered radiance along ``direction [..., 3]`` (the reflection direction)
        for ``roughness [..., 1]`` -> ``[..., 3]`` (the split sum's first term)."""
        levels = self.roughness_levels
        r = roughness.clamp(levels[0], levels[-1])
        uv = direction_to_uv(direction)
        terms = []
        for index, texture in enumerate(self.levels):
            weight = torch.ones_like(r)  # the hat function of level `index` in roughness
            if index > 0:
                rising = (r - levels[index - 1]) / (levels[index] - levels[index - 1])
                weight = torch.minimum(weight, rising)
            if index < len(levels) - 1:
                falling = (levels[index + 1] - r) / (levels[index + 1] - levels[index])
                weight = torch.minimum(weight, falling)
            terms.append(weight.clamp_min(0.0) * lookup_uv(texture, uv))
        return torch.stack(terms).sum(0)


def _check_width(width: int, what: str) -> None:
    if width < 32 or width & (width - 1):
        raise ConfigError(f"{what} must be a power of two >= 32 (e.g. 256); got {width}.")


def _source_key(source: str, sky: SkyParams | None) -> tuple:
    """What identifies a source's content: the sky's parameters, or the file and its mtime/size."""
    if source == "sky":
        return ("sky", sky or SkyParams())
    if source == "studio" and sky is None:
        return ("sky", STUDIO)
    if sky is not None:
        raise ConfigError(
            f"sky parameters apply only to source 'sky'; got the file source {source!r}."
        )
    path = Path(source).expanduser()
    try:
        stat = path.stat()
    except OSError:
        load_equirect(path)  # raises the right ConfigError (missing file, unsupported type)
        raise
    return ("file", str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _prefiltered(
    key: tuple, scale: float, resolution: int, levels: tuple[float, ...], irradiance_resolution: int
) -> dict[str, Tensor]:
    """The buffers of a light (CPU float32), memoised: building the same light twice is free."""
    if key[0] == "sky":
        image = procedural_sky(resolution // 2, key[1])
    else:
        image = resample(load_equirect(Path(key[1])), resolution // 2)
    light = EnvironmentLight(
        image * scale, roughness_levels=levels, irradiance_resolution=irradiance_resolution
    )
    return dict(light.named_buffers())
