"""Reproducible data set of coloured primitive shapes: images, captions, metadata.

Sample ``i`` of ``generate(n, seed)`` shows the ``i % 48``-th (shape, colour) pair of
``SHAPES x COLORS`` (so any ``n >= 48`` covers every pair), seen from a camera drawn by core's
``random-camera`` sampler with the ``dreamfusion-sd`` preset's ranges, lit by that camera's light
(Lambert: ``albedo * (0.25 + 0.75 max(0, n.l))``, linear RGB, no antialiasing) over a random solid
background at least :data:`MIN_BACKGROUND_DISTANCE` from the albedo in RGB. The caption is
``"a {color} {shape}"`` with the view suffix the DreamFusion prompt processor gives that camera
(default thresholds), e.g. ``"a red cube, front view"``. Every sample draws its randomness from its
own seed derived from ``(seed, i)`` inside a forked RNG scope: the same seed gives identical bytes
and the caller's global RNG state is untouched. An :class:`AlbedoJitter` (used for the classifier's
training set, never for the diffusion models' data) varies each sample's albedo around its colour.

Writing a data set to disk (and reading it back) is training tooling:
:mod:`studio_primitives.training.dataset`, ``studio primitives data --out DIR --n N --seed S``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from studio.api import ConfigError, RandomCameraDataModule, make_rasterizer
from studio_dreamfusion.prompts.views import ViewThresholds, build_directions, direction_indices
from studio_primitives.colors import COLORS, color_rgb
from studio_primitives.shapes import SHAPES, check_shape, shape_mesh

#: Every (shape, colour) pair in generation order.
PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.product(SHAPES, COLORS))

#: The ``dreamfusion-sd`` preset's camera ranges (height/width/batch size are set per call).
CAMERA_CONFIG: dict[str, Any] = {
    "batch_size": 1,
    "camera_distance_range": (1.5, 2.0),
    "fovy_range": (40.0, 70.0),
    "elevation_range": (-10.0, 45.0),
    "light_sample_strategy": "dreamfusion",
}

AMBIENT = 0.25
DIFFUSE = 0.75
MIN_BACKGROUND_DISTANCE = 0.3


@dataclass(frozen=True)
class AlbedoJitter:
    """Per-sample albedo variation: each channel times ``U(1 - scale, 1 + scale)``, then one
    ``U(0, lift)`` added to all channels (a grey lift, as soft volume renders show), clamped to
    ``[0, 1]``. With the defaults black spans about 0.03-0.15 and stays far from white's 0.76-1."""

    scale: float = 0.2
    lift: float = 0.1

    def __post_init__(self) -> None:
        if not (0.0 <= self.scale < 1.0 and 0.0 <= self.lift <= 0.5):
            raise ConfigError(
                f"AlbedoJitter needs 0 <= scale < 1 and 0 <= lift <= 0.5; got scale={self.scale}, "
                f"lift={self.lift}."
            )

    def apply(self, albedo: torch.Tensor) -> torch.Tensor:
        """A jittered copy of ``albedo`` ``[3]`` (draws from the global torch RNG)."""
        gain = 1.0 + self.scale * (2.0 * torch.rand(3) - 1.0)
        return (albedo * gain + self.lift * torch.rand(1)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Sample:
    """One image (``uint8 [size, size, 3]``) with its caption and what produced it; ``mask``
    (``bool [size, size]``) marks the object's pixels, every other pixel is ``background``."""

    image: np.ndarray
    mask: np.ndarray
    caption: str
    shape: str
    color: str
    view: str
    elevation: float
    azimuth: float
    background: tuple[float, float, float]

    def metadata(self) -> dict[str, Any]:
        """Everything but the image and mask, JSON-ready."""
        return {
            "caption": self.caption,
            "shape": self.shape,
            "color": self.color,
            "view": self.view,
            "elevation": self.elevation,
            "azimuth": self.azimuth,
            "background": list(self.background),
        }


# -- captions ---------------------------------------------------------------------------------


def view_caption(shape: str, color: str, elevation: float, azimuth: float) -> tuple[str, str]:
    """``(view name, caption)`` the DreamFusion prompt processor uses for this camera (degrees)."""
    check_shape(shape)
    color_rgb(color)
    directions = build_directions(f"a {color} {shape}", "", ViewThresholds())
    index = direction_indices(
        directions, torch.tensor([elevation]), torch.tensor([azimuth]), torch.ones(1)
    )
    direction = directions[int(index[0])]
    return direction.name, direction.prompt


# -- rendering --------------------------------------------------------------------------------


def render_with_mask(
    shape: str,
    color: str,
    camera: dict[str, Any],
    background: torch.Tensor,
    size: int,
    albedo: Optional[torch.Tensor] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Image ``uint8 [size, size, 3]`` and object mask ``bool [size, size]`` (see the module doc).

    ``camera`` holds ``mvp_mtx`` (``[4, 4]`` or ``[1, 4, 4]``) and ``light_positions`` (``[3]`` or
    ``[1, 3]``) as a ``random-camera`` batch does; row 0 of the image is its top. ``albedo``
    (``[3]``) replaces the colour's own (see :class:`AlbedoJitter`).
    """
    mesh = shape_mesh(shape)
    albedo = color_rgb(color) if albedo is None else torch.as_tensor(albedo, dtype=torch.float32)
    mvp = torch.as_tensor(camera["mvp_mtx"], dtype=torch.float32).reshape(-1, 4, 4)[0]
    light = torch.as_tensor(camera["light_positions"], dtype=torch.float32).reshape(-1, 3)[0]
    background = torch.as_tensor(background, dtype=torch.float32).reshape(3)
    rasterizer = make_rasterizer("torch")
    v = mesh.v_pos
    tri = mesh.t_pos_idx.int()
    pos_clip = torch.cat([v, torch.ones_like(v[:, :1])], dim=-1) @ mvp.T
    rast = rasterizer.rasterize(pos_clip[None], tri, (size, size))
    feats = rasterizer.interpolate(torch.cat([v, mesh.v_nrm], dim=-1), rast, tri)[0]
    normal = F.normalize(feats[..., 3:], dim=-1)
    to_light = F.normalize(light - feats[..., :3], dim=-1)
    shade = AMBIENT + DIFFUSE * (normal * to_light).sum(-1).clamp_min(0.0)
    mask = rast[0, ..., 3] > 0
    rgb = torch.where(mask[..., None], albedo * shade[..., None], background)
    image = (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return image.numpy(), mask.numpy()


def render_sample(
    shape: str, color: str, camera: dict[str, Any], background: torch.Tensor, size: int
) -> np.ndarray:
    """The image ``uint8 [size, size, 3]`` of :func:`render_with_mask`."""
    return render_with_mask(shape, color, camera, background, size)[0]


# -- sampling ---------------------------------------------------------------------------------


def camera_sampler(size: int) -> RandomCameraDataModule:
    """core's ``random-camera`` module with :data:`CAMERA_CONFIG` at ``size x size``, drawing on
    every call (a sample's camera comes from its own seed, whatever was drawn before)."""
    return RandomCameraDataModule(
        {**CAMERA_CONFIG, "height": size, "width": size, "batches_per_draw": 1}
    )


def random_background(albedo: torch.Tensor) -> torch.Tensor:
    """A uniform random RGB ``[3]`` at least :data:`MIN_BACKGROUND_DISTANCE` from ``albedo``
    (draws from the global torch RNG)."""
    while True:
        background = torch.rand(3)
        if (background - albedo).norm() >= MIN_BACKGROUND_DISTANCE:
            return background


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of data set ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def make_sample(
    index: int,
    seed: int,
    size: int,
    cameras: RandomCameraDataModule,
    jitter: Optional[AlbedoJitter] = None,
) -> Sample:
    """Sample ``index`` of data set ``seed`` (deterministic; the global RNG is restored)."""
    shape, color = PAIRS[index % len(PAIRS)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(seed, index))
        camera = cameras.train_batch()
        albedo = color_rgb(color) if jitter is None else jitter.apply(color_rgb(color))
        background = random_background(albedo)
    elevation = float(camera["elevation"][0])
    azimuth = float(camera["azimuth"][0])
    view, caption = view_caption(shape, color, elevation, azimuth)
    image, mask = render_with_mask(shape, color, camera, background, size, albedo)
    return Sample(
        image=image,
        mask=mask,
        caption=caption,
        shape=shape,
        color=color,
        view=view,
        elevation=elevation,
        azimuth=azimuth,
        background=tuple(float(c) for c in background.tolist()),
    )


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch's CPU ops on one thread inside the block (restored after).

    Each sample is a few hundred tiny tensor ops; on a many-core machine (or a container whose CPU
    quota is smaller than the host's core count) torch's thread pool spins on every one of them
    and generation becomes orders of magnitude slower than on a single thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def generate(
    n: int, seed: int, size: int = 64, jitter: Optional[AlbedoJitter] = None
) -> Iterator[Sample]:
    """``n`` samples of data set ``seed`` at ``size x size`` (see the module doc), albedos varied
    by ``jitter`` when given; rendered on one CPU thread (see :func:`single_threaded`)."""
    if n < 0 or size < 1:
        raise ConfigError(f"generate needs n >= 0 and size >= 1; got n={n}, size={size}.")
    cameras = camera_sampler(size)
    for index in range(n):
        with single_threaded():
            sample = make_sample(index, seed, size, cameras, jitter)
        yield sample
