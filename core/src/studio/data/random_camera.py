"""``random-camera``: random training cameras around the origin plus validation/test orbits.

Training batches follow the reference's sampler: elevation half the time uniform in degrees and half
the time uniform on the sphere, azimuth stratified across the batch, distance and field of view
uniform, camera/centre/up perturbations, and a light position drawn by the ``dreamfusion`` or
``magic3d`` strategy. Validation and test views orbit at a fixed elevation and distance.

``height``/``width``/``batch_size`` may be lists that switch at ``resolution_milestones``; the
switch happens on exactly the step named (the trainer updates the module before drawing a batch).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal, Union

import attrs
import torch
import torch.nn.functional as F

from studio.data import cameras as cam
from studio.data.base import Batch, DataModule, LazySequence
from studio.errors import ConfigError

IntOrList = Union[int, list[int]]


@attrs.define(kw_only=True)
class RandomCameraConfig:
    height: IntOrList = 64
    width: IntOrList = 64
    batch_size: IntOrList = 1
    resolution_milestones: list[int] = attrs.Factory(list)
    eval_height: int = 512
    eval_width: int = 512
    eval_batch_size: int = 1
    n_val_views: int = 1
    n_test_views: int = 120
    elevation_range: tuple[float, float] = (-10.0, 90.0)
    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    camera_distance_range: tuple[float, float] = (1.0, 1.5)
    fovy_range: tuple[float, float] = (40.0, 70.0)
    camera_perturb: float = 0.1
    center_perturb: float = 0.2
    up_perturb: float = 0.02
    light_position_perturb: float = 1.0
    light_distance_range: tuple[float, float] = (0.8, 1.5)
    eval_elevation_deg: float = 15.0
    eval_camera_distance: float = 1.5
    eval_fovy_deg: float = 70.0
    light_sample_strategy: Literal["dreamfusion", "magic3d"] = "dreamfusion"
    batch_uniform_azimuth: bool = True
    rays_d_normalize: bool = True


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
        self._stage = 0

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
    def _sample_elevation(self, b: int) -> torch.Tensor:
        e0, e1 = (v * cam.DEG for v in self.cfg.elevation_range)
        if torch.rand(1).item() < 0.5:
            return torch.rand(b) * (e1 - e0) + e0
        s0, s1 = math.sin(e0), math.sin(e1)
        return torch.asin(torch.rand(b) * (s1 - s0) + s0)

    def _sample_azimuth(self, b: int) -> torch.Tensor:
        a0, a1 = (v * cam.DEG for v in self.cfg.azimuth_range)
        if self.cfg.batch_uniform_azimuth:
            return ((torch.rand(b) + torch.arange(b)) / b) * (a1 - a0) + a0
        return torch.rand(b) * (a1 - a0) + a0

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
        cfg = self.cfg
        b, h, w = self.batch_size, self.height, self.width
        elevation = self._sample_elevation(b)
        azimuth = self._sample_azimuth(b)
        r0, r1 = cfg.camera_distance_range
        distance = torch.rand(b) * (r1 - r0) + r0
        positions = cam.spherical_to_position(elevation, azimuth, distance)
        positions = positions + (torch.rand(b, 3) * 2 - 1) * cfg.camera_perturb
        center = torch.randn(b, 3) * cfg.center_perturb
        up = torch.tensor([0.0, 0.0, 1.0]).expand(b, 3) + torch.randn(b, 3) * cfg.up_perturb
        f0, f1 = cfg.fovy_range
        fovy = (torch.rand(b) * (f1 - f0) + f0) * cam.DEG
        lights = self._sample_lights(positions)
        batch = self._camera_batch(positions, center, up, fovy, h, w)
        batch.update(
            light_positions=lights,
            elevation=elevation / cam.DEG,
            azimuth=azimuth / cam.DEG,
            camera_distances=distance,
        )
        return batch

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
