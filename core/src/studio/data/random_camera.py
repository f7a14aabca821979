"""``random-camera``: random training cameras around the origin plus validation/test orbits.

Training batches follow the reference's sampler: elevation half the time uniform in degrees and half
the time uniform on the sphere, azimuth stratified across the batch, distance and field of view
uniform, camera/centre/up perturbations, and a light position drawn by the ``dreamfusion`` or
``magic3d`` strategy. Validation and test views orbit at a fixed elevation and distance.

``height``/``width``/``batch_size`` may be lists that switch at ``resolution_milestones``; the
switch happens on exactly the step named (the trainer updates the module before drawing a batch).

Training batches are drawn ``batches_per_draw`` at a time: one vectorised draw of all their
cameras (from the global torch RNG), moved to the module's device in one copy, then handed out one
per ``train_batch`` call. A camera batch is some 200 small tensor ops; in a launch-bound training
step (DreamFusion's at batch 1) drawing it every step cost about 2 ms of host time, now spread
over the draw. A draw holds at most ``PIXELS_PER_DRAW`` rays, and a change of batch size or
resolution discards what is left of it. ``state_dict`` records where the stream is (the RNG state
the pending draw started from and how many of its batches were handed out), so a resumed run
hands out exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

import bisect
import collections
import functools
import itertools
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

import attrs
import torch
import torch.nn.functional as F

from studio.config.bounds import (
    NonNegativeFloat,
    Ordered,
    PixelSize,
    PixelSizes,
    PositiveFloat,
    PositiveInt,
    Range,
)
from studio.data import cameras as cam
from studio.data.base import Batch, DataModule, LazySequence
from studio.errors import ConfigError
from studio.training.transfer import to_device

IntOrList = Union[int, list[int]]

#: The most rays (batches x cameras x pixels) one draw of training batches holds.
PIXELS_PER_DRAW = 2**18


@attrs.define(kw_only=True)
class RandomCameraConfig:
    height: PixelSizes = 64
    """Training image height in pixels, or one per stage of ``resolution_milestones``."""
    width: PixelSizes = 64
    """Training image width in pixels, or one per stage of ``resolution_milestones``."""
    batch_size: Annotated[IntOrList, Range(low=1, high=4096)] = 1
    """Cameras per training batch (per process), or one per stage of ``resolution_milestones``."""
    resolution_milestones: list[int] = attrs.Factory(list)
    """Steps (increasing) at which list-valued ``height``/``width``/``batch_size`` move on."""
    eval_height: PixelSize = 512
    """Validation and test image height in pixels."""
    eval_width: PixelSize = 512
    """Validation and test image width in pixels."""
    eval_batch_size: PositiveInt = 1
    """Accepted for reference configs; evaluation always renders one view at a time."""
    n_val_views: PositiveInt = 1
    """Validation views, evenly spaced in azimuth around the object."""
    n_test_views: PositiveInt = 120
    """Test-video frames, azimuth 0 to 360 degrees inclusive (first and last frame coincide)."""
    elevation_range: Annotated[tuple[float, float], Ordered(), Range(-90.0, 90.0)] = (-10.0, 90.0)
    """Training camera elevation range in degrees (half uniform in degrees, half on the sphere)."""
    azimuth_range: Annotated[tuple[float, float], Ordered()] = (-180.0, 180.0)
    """Training camera azimuth range in degrees (measured from +x toward +y)."""
    camera_distance_range: Annotated[tuple[float, float], Ordered(), Range(low=1e-6)] = (1.0, 1.5)
    """Training camera distance range from the origin, in world units."""
    fovy_range: Annotated[tuple[float, float], Ordered(), Range(1e-3, 179.0)] = (40.0, 70.0)
    """Training vertical field of view range in degrees."""
    camera_perturb: NonNegativeFloat = 0.1
    """Camera position jitter: uniform in ``[-p, p]`` per axis, world units (0: none)."""
    center_perturb: NonNegativeFloat = 0.2
    """Look-at point jitter around the origin: normal standard deviation, world units (0: none)."""
    up_perturb: NonNegativeFloat = 0.02
    """Up vector jitter: normal standard deviation added to ``(0, 0, 1)`` (0: none)."""
    light_position_perturb: NonNegativeFloat = 1.0
    """``dreamfusion`` light strategy: standard deviation of the normal noise added to the camera
    position before taking the light's direction."""
    light_distance_range: Annotated[tuple[float, float], Ordered(), Range(low=0.0)] = (0.8, 1.5)
    """Point light distance range from the origin, in world units."""
    eval_elevation_deg: Annotated[float, Range(-90.0, 90.0)] = 15.0
    """Elevation of the validation/test orbit in degrees."""
    eval_camera_distance: PositiveFloat = 1.5
    """Camera distance of the validation/test orbit, in world units."""
    eval_fovy_deg: Annotated[float, Range(1e-3, 179.0)] = 70.0
    """Vertical field of view of the validation/test views in degrees."""
    light_sample_strategy: Literal["dreamfusion", "magic3d"] = "dreamfusion"
    """Light placement: ``dreamfusion`` (near the camera's direction) or ``magic3d`` (random
    azimuth, 30-90 degrees elevation around the camera's direction)."""
    batch_uniform_azimuth: bool = True
    """Stratify azimuths within a batch (one per equal bin) instead of drawing them uniformly."""
    rays_d_normalize: bool = True
    """Normalize ray directions to unit length."""
    batches_per_draw: PositiveInt = 16
    """Training batches drawn at once in one vectorised draw (at most 2^18 rays; 1: every call)."""


def _as_list(value: IntOrList) -> list[int]:
    return list(value) if isinstance(value, list) else [value]


class RandomCameraDataModule(DataModule):
    Config = RandomCameraConfig
    config_path = "data"

    def configure(self) -> None:
        cfg = self.cfg
        self.heights = _as_list(cfg.height)
        self.widths = _as_list(cfg.width)
        self.batch_sizes = _as_list(cfg.batch_size)
        milestones = list(cfg.resolution_milestones)
        if any(b <= a for a, b in itertools.pairwise(milestones)):
            raise ConfigError(
                f"data.resolution_milestones: steps must be strictly increasing; got {milestones}."
            )
        n = len(milestones) + 1
        for key, values in (
            ("height", self.heights),
            ("width", self.widths),
            ("batch_size", self.batch_sizes),
        ):
            if len(values) not in (1, n):
                raise ConfigError(
                    f"data.{key}: a list needs one entry per resolution stage "
                    f"(len(resolution_milestones) + 1 = {n}); got {len(values)}."
                )
            if any(v < 1 for v in values):
                raise ConfigError(f"data.{key}: must be at least 1; got {values}.")
        if cfg.batches_per_draw < 1:
            raise ConfigError(
                f"data.batches_per_draw: must be at least 1 (1 draws a batch on every call); "
                f"got {cfg.batches_per_draw}."
            )
        self._stage = 0
        self._drawn: collections.deque[Batch] = collections.deque()
        self._drawn_shape: tuple[int, int, int] | None = None  # (batch size, height, width)
        self._draw_rng_state: torch.Tensor | None = None  # the RNG state the draw started from
        self._handed_out = 0  # batches of the current draw already returned

    # -- step-dependent resolution ---------------------------------------------------------------
    def update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        self._stage = bisect.bisect_right(self.cfg.resolution_milestones, global_step)

    def _current(self, values: list[int]) -> int:
        return values[min(self._stage, len(values) - 1)]

    @property
    def height(self) -> int:
        return self._current(self.heights)

    @property
    def width(self) -> int:
        return self._current(self.widths)

    @property
    def batch_size(self) -> int:
        return self._current(self.batch_sizes)

    # -- training --------------------------------------------------------------------------------
    def _sample_elevation(self, n: int, b: int) -> torch.Tensor:
        """``[n * b]`` elevations in radians: per batch, uniform in degrees or on the sphere
        (one fair coin per batch of ``b``)."""
        e0, e1 = (v * cam.DEG for v in self.cfg.elevation_range)
        in_degrees = torch.rand(n, 1) < 0.5
        u = torch.rand(n, b)
        s0, s1 = math.sin(e0), math.sin(e1)
        on_sphere = torch.asin(u * (s1 - s0) + s0)
        return torch.where(in_degrees, u * (e1 - e0) + e0, on_sphere).reshape(-1)

    def _sample_azimuth(self, n: int, b: int) -> torch.Tensor:
        """``[n * b]`` azimuths in radians; with ``batch_uniform_azimuth`` each batch of ``b``
        has one sample in each of ``b`` equal bins."""
        a0, a1 = (v * cam.DEG for v in self.cfg.azimuth_range)
        if self.cfg.batch_uniform_azimuth:
            return (((torch.rand(n, b) + torch.arange(b)) / b) * (a1 - a0) + a0).reshape(-1)
        return torch.rand(n * b) * (a1 - a0) + a0

    def _sample_lights(self, positions: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b = positions.shape[0]
        d0, d1 = cfg.light_distance_range
        distance = torch.rand(b) * (d1 - d0) + d0
        if cfg.light_sample_strategy == "dreamfusion":
            direction = F.normalize(
                positions + torch.randn(b, 3) * cfg.light_position_perturb, dim=-1
            )
            return direction * distance[:, None]
        z = F.normalize(positions, dim=-1)
        x = F.normalize(torch.stack([z[:, 1], -z[:, 0], torch.zeros_like(z[:, 0])], dim=-1), dim=-1)
        y = F.normalize(torch.cross(z, x, dim=-1), dim=-1)
        rot = torch.stack([x, y, z], dim=-1)
        azimuth = torch.rand(b) * 2 * math.pi - math.pi
        elevation = torch.rand(b) * (math.pi / 2 - math.pi / 6) + math.pi / 6
        local = torch.stack(
            [
                torch.cos(elevation) * torch.cos(azimuth),
                torch.cos(elevation) * torch.sin(azimuth),
                torch.sin(elevation),
            ],
            dim=-1,
        )
        return (rot @ local[:, :, None])[:, :, 0] * distance[:, None]

    def train_batch(self) -> Batch:
        shape = (self.batch_size, self.height, self.width)
        if not self._drawn or shape != self._drawn_shape:
            self._draw(shape)
        self._handed_out += 1
        return self._drawn.popleft()

    def _draw(self, shape: tuple[int, int, int]) -> None:
        """Draw the next training batches of ``shape`` at once and queue them."""
        b, h, w = shape
        n = min(self.cfg.batches_per_draw, max(1, PIXELS_PER_DRAW // (b * h * w)))
        self._draw_rng_state = torch.get_rng_state()
        self._drawn_shape, self._handed_out = shape, 0
        cameras = to_device(self._sample_cameras(n * b, n, b, h, w), self.device)
        parts = {k: v.split(b) if isinstance(v, torch.Tensor) else v for k, v in cameras.items()}
        self._drawn = collections.deque(
            {k: v[i] if isinstance(v, tuple) else v for k, v in parts.items()} for i in range(n)
        )

    def _sample_cameras(self, m: int, n: int, b: int, h: int, w: int) -> Batch:
        """``m = n * b`` training cameras (``n`` batches of ``b``) as one batch on the CPU."""
        cfg = self.cfg
        elevation = self._sample_elevation(n, b)
        azimuth = self._sample_azimuth(n, b)
        r0, r1 = cfg.camera_distance_range
        distance = torch.rand(m) * (r1 - r0) + r0
        positions = cam.spherical_to_position(elevation, azimuth, distance)
        positions = positions + (torch.rand(m, 3) * 2 - 1) * cfg.camera_perturb
        center = torch.randn(m, 3) * cfg.center_perturb
        up = torch.tensor([0.0, 0.0, 1.0]).expand(m, 3) + torch.randn(m, 3) * cfg.up_perturb
        f0, f1 = cfg.fovy_range
        fovy = (torch.rand(m) * (f1 - f0) + f0) * cam.DEG
        lights = self._sample_lights(positions)
        batch = self._camera_batch(positions, center, up, fovy, h, w)
        batch.update(
            light_positions=lights,
            elevation=elevation / cam.DEG,
            azimuth=azimuth / cam.DEG,
            camera_distances=distance,
        )
        return batch

    # -- checkpointing the training stream -------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where the training stream is: empty when no drawn batch is pending."""
        if not self._drawn or self._drawn_shape is None:
            return {}
        return {
            "rng_state": self._draw_rng_state,
            "shape": list(self._drawn_shape),
            "handed_out": self._handed_out,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Redraw the pending batches of ``state`` (the global RNG is left as it is)."""
        self._drawn.clear()
        self._drawn_shape = None
        if not state:
            return
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(state["rng_state"])
            self._draw(tuple(state["shape"]))
        for _ in range(state["handed_out"]):
            self._drawn.popleft()
        self._handed_out = state["handed_out"]

    def _camera_batch(
        self,
        positions: torch.Tensor,
        center: torch.Tensor,
        up: torch.Tensor,
        fovy: torch.Tensor,
        h: int,
        w: int,
    ) -> dict[str, Any]:
        c2w = cam.look_at(positions, center, up)
        focal = cam.focal_from_fovy(h, fovy)
        directions = _unit_directions(h, w)[None].repeat(positions.shape[0], 1, 1, 1)
        directions[..., :2] = directions[..., :2] / focal[:, None, None, None]
        rays_o, rays_d = cam.world_rays(directions, c2w, self.cfg.rays_d_normalize)
        proj = cam.projection_matrix(fovy, w / h)
        return {
            "rays_o": rays_o,
            "rays_d": rays_d,
            "c2w": c2w,
            "mvp_mtx": cam.mvp_matrix(c2w, proj),
            "proj_mtx": proj,
            "camera_positions": positions,
            "fovy": fovy,
            "height": h,
            "width": w,
        }

    # -- evaluation orbits -----------------------------------------------------------------------
    def _orbit_view(self, index: int, azimuth_deg: float) -> Batch:
        cfg = self.cfg
        elevation = torch.tensor([cfg.eval_elevation_deg]) * cam.DEG
        azimuth = torch.tensor([azimuth_deg]) * cam.DEG
        distance = torch.tensor([cfg.eval_camera_distance])
        positions = cam.spherical_to_position(elevation, azimuth, distance)
        fovy = torch.tensor([cfg.eval_fovy_deg]) * cam.DEG
        batch = self._camera_batch(
            positions,
            torch.zeros(1, 3),
            torch.tensor([[0.0, 0.0, 1.0]]),
            fovy,
            cfg.eval_height,
            cfg.eval_width,
        )
        batch.update(
            index=torch.tensor([index]),
            light_positions=positions.clone(),
            elevation=torch.tensor([cfg.eval_elevation_deg]),
            azimuth=torch.tensor([azimuth_deg]),
            camera_distances=distance,
        )
        return batch

    def val_batches(self) -> Sequence[Batch]:
        n = self.cfg.n_val_views
        azimuths = torch.linspace(0, 360, n + 1)[:n].tolist()
        return LazySequence(n, lambda i: self._orbit_view(i, azimuths[i]))

    def test_batches(self) -> Sequence[Batch]:
        n = self.cfg.n_test_views
        azimuths = torch.linspace(0, 360, n).tolist()
        return LazySequence(n, lambda i: self._orbit_view(i, azimuths[i]))


@functools.lru_cache(maxsize=8)
def _unit_directions(height: int, width: int) -> torch.Tensor:
    """The pixel grid's unit-focal directions, the same every step: built once per resolution
    (callers copy before scaling it)."""
    return cam.ray_directions(height, width, 1.0)
