"""``nerf-volume``: volume rendering of an implicit geometry.

Sampling backends (``backend: auto | nerfacc | torch``):

* ``nerfacc`` (CUDA): ``OccGridEstimator`` marching with a fixed step ``sqrt(3) * 2r / N``,
  skipping empty cells of an occupancy grid updated every 16 training steps and, with
  ``prune_alpha_threshold``, samples whose alpha is below 0.01;
* ``torch`` (everywhere): ``N`` stratified samples between the ray's entry and exit of the box
  (``torch_sampling: box``), or nerfacc's own fixed-step marching (``marching``: the same
  samples and weights as the nerfacc backend); with ``grid_prune`` it drops the samples
  nerfacc's marching would skip (alpha below 0.01 at the marching step with
  ``prune_alpha_threshold``, transmittance below 1e-4), so both paths see the same density
  threshold; the occupancy grid itself, an acceleration structure, is not kept.

Both produce packed samples and share the shading and compositing code. The per-sample outputs
of training hold the surviving samples only, on either backend, so losses reduced over samples
(SJC's emptiness: a mean over them) do not depend on the backend. In evaluation the rays are
processed in chunks so 512x512 renders stay within memory (``eval_chunk_size`` sample points
evaluated at once).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, Optional

import attrs
import torch
import torch.nn.functional as F

from studio.api import BaseRenderer, PositiveInt
from studio.api import choose_backend as choose
from studio_dreamfusion.renderers.capacity_marching import (
    CapacitySamples,
    SampleCapacity,
    capacity_march,
    dense_weights,
)
from studio_dreamfusion.renderers.occupancy_marching import march
from studio_dreamfusion.renderers.occupancy_update import update_occupancy
from studio_dreamfusion.renderers.volume import (
    RaySamples,
    accumulate,
    marching_samples,
    steps_per_ray,
    uniform_samples,
    visible_uniform,
    weights_from_density_uniform,
)

log = logging.getLogger(__name__)

PER_RAY = ("opacity", "depth", "comp_rgb_fg", "z_variance", "comp_normal")


class NeRFVolumeRenderer(BaseRenderer):
    @attrs.define(kw_only=True)
    class Config(BaseRenderer.Config):
        num_samples_per_ray: PositiveInt = 512
        """Samples across the box per ray (nerfacc: marching step ``sqrt(3) * 2 * radius / N``;
        torch: N samples between the ray's entry and exit)."""
        eval_chunk_size: PositiveInt = 160000
        """Evaluation renders in chunks of this many sample points (torch: this many divided by
        ``num_samples_per_ray`` rays), to bound memory."""
        randomized: bool = True
        """Stratified (jittered) sample positions in training; evaluation always uses midpoints."""
        near_plane: float = 0.0
        """Rays start no closer than this distance from the camera (world units)."""
        far_plane: float = 1e10
        """Rays end no farther than this distance from the camera (world units)."""
        return_comp_normal: bool = False
        """Also render normals in training (evaluation always does when the geometry has them)."""
        return_normal_perturb: bool = False
        """Training: also return normals at points jittered by N(0, 0.01^2) (``normal_perturb``)."""
        estimator: Literal["occgrid"] = "occgrid"
        """Sample estimator: ``occgrid`` (occupancy grid; the only choice)."""
        grid_prune: bool = True
        """Skip empty space (nerfacc's occupancy grid; torch drops the samples it would skip) and
        stop rays once transmittance is below 1e-4; false: dense uniform marching."""
        prune_alpha_threshold: bool = True
        """With ``grid_prune``: also skip samples whose alpha is below 0.01."""
        occupancy_grid_resolution: PositiveInt = 32
        """Cells per axis of nerfacc's occupancy grid."""
        backend: Literal["auto", "nerfacc", "torch"] = "auto"
        """Ray marching: ``nerfacc`` (CUDA), ``torch`` (anywhere) or ``auto`` (nerfacc on CUDA
        when installed, else torch)."""
        fixed_capacity: bool = False
        """Training with nerfacc (or the torch backend's ``marching`` samples): march into sample
        buffers of a fixed size, sized from recent steps (``capacity_marching``), so a step never
        waits for the GPU to learn how many samples survive (a CUDA graph can capture it).
        Per-sample outputs then hold padding slots of zero weight, marked false in
        ``sample_valid``; a step that overflows its buffers loses the far samples of its last
        rays (logged) and the buffers grow."""
        torch_sampling: Literal["box", "marching"] = "box"
        """The torch backend's samples: ``box``, N per ray spread over its chord of the box;
        ``marching``, nerfacc's fixed step ``sqrt(3) * 2 * radius / N`` from the near plane (the
        nerfacc backend's samples and weights exactly, e.g. for per-sample losses)."""

    def configure(self) -> None:
        cfg = self.cfg
        self.backend = choose("ray-marching", cfg.backend, cuda=torch.cuda.is_available())
        self.render_step_size = 1.732 * 2 * cfg.radius / cfg.num_samples_per_ray
        # marching steps per ray across the box [-r, r]^3 (its diagonal is 2 sqrt(3) r)
        self.marching_steps = steps_per_ray(2 * math.sqrt(3) * cfg.radius, self.render_step_size)
        self.estimator: Optional[torch.nn.Module] = None
        if self.backend == "nerfacc":
            import nerfacc

            from studio_dreamfusion.renderers.nerfacc_build import load_nerfacc_backend

            load_nerfacc_backend()  # build its CUDA code now, one process at a time
            r = cfg.radius
            self.estimator = nerfacc.OccGridEstimator(
                roi_aabb=[-r, -r, -r, r, r, r], resolution=cfg.occupancy_grid_resolution, levels=1
            )
            if not cfg.grid_prune:
                self.estimator.occs.fill_(1.0)
                self.estimator.binaries.fill_(True)
        # The occupancy grid is a cache, not a model: checkpoints stay loadable across backends,
        # and it is refilled from the geometry on first use after construction or loading.
        self._grid_filled = False
        # nerfacc's marching through `occupancy_marching.march` (one host sync per call);
        # False: through `OccGridEstimator.sampling` (same samples, six syncs; for comparison)
        self.single_sync_marching = True
        self.sample_capacity: Optional[SampleCapacity] = None  # sized on the first fixed march
        # captured steps (graph_state was called for this step): each step writes its sample
        # counts here, and the next step queues their copy to the host (a graph cannot)
        self._graphed = False
        self._graph_counts: Optional[torch.Tensor] = None
        self._counts_pending = False  # _graph_counts holds a step's counts not yet queued
        self.register_load_state_dict_post_hook(_ignore_estimator_keys)

    def _occupancy_of(self, points: torch.Tensor) -> torch.Tensor:
        """A point's occupancy for the grid: density times the marching step."""
        return self.geometry.forward_density(points) * self.render_step_size

    def _update_grid(self, step: int) -> None:
        """nerfacc's grid update at ``step`` (every cell at 0, the warm-up). With
        ``fixed_capacity``: ``occupancy_update``'s, the same rules with no host sync and the
        grid's tensors kept (what a captured step needs; not yet the default elsewhere, as it
        has not yet run on a GPU)."""
        if self.cfg.fixed_capacity:
            update_occupancy(self.estimator, step, self._occupancy_of)
        else:
            with torch.no_grad():
                self.estimator._update(step=step, occ_eval_fn=self._occupancy_of, occ_thre=0.01)

    def _fill_grid(self) -> None:
        """Evaluate every occupancy cell now (nerfacc's warm-up update), e.g. after a resume."""
        self._update_grid(0)  # step 0 = warm-up: all cells, in training and in evaluation
        self._grid_filled = True

    # -- per-step ------------------------------------------------------------------------------
    def update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        self._graphed = False  # a new step: captured only if graph_state is called for it
        if (
            self.estimator is None
            or not self.cfg.grid_prune
            or on_load_weights
            or not self.training
        ):
            return
        if self.estimator.binaries.device.type != "cuda":
            return
        if not self._grid_filled:  # first step of a run or of a resume: no cell is known yet
            self._fill_grid()
            return
        if global_step % 16 == 0:  # nerfacc's update_every_n_steps
            self._update_grid(global_step)

    # -- captured steps ------------------------------------------------------------------------
    def graph_blocker(self) -> Optional[str]:
        if not self.cfg.fixed_capacity:
            return (
                f"{self.config_path}.fixed_capacity is false, so every step reads back how many "
                "samples survive (set it to true to capture the step)"
            )
        if self.backend != "nerfacc":
            return f"{self.config_path} marches with the {self.backend} backend, not nerfacc"
        return super().graph_blocker()

    def graph_state(self) -> tuple:
        """The sample buffers' sizes: the previous step's counts are queued to the host and the
        counts that have arrived may grow the buffers (a new size captures a new graph)."""
        self._graphed = True
        capacity = self.sample_capacity
        if capacity is not None:
            self._queue_graph_counts()
            self._warn_if_overflowed(capacity.update())
        self._counts_pending = True  # this step writes them (a replay runs no Python)
        return ("unsized",) if capacity is None else (capacity.capacity,)

    def _queue_graph_counts(self) -> None:
        """Queue the counts a captured step left in ``_graph_counts`` (once)."""
        if self._counts_pending and self._graph_counts is not None:
            assert self.sample_capacity is not None
            self.sample_capacity.record(self._graph_counts)
        self._counts_pending = False

    def _warn_if_overflowed(self, overflow: bool) -> None:
        if overflow:
            assert self.sample_capacity is not None
            log.warning(
                "A training step had more samples than its fixed-capacity buffers (%d so "
                "far): it dropped the far samples of its last rays; buffers grown to %s.",
                self.sample_capacity.overflows,
                self.sample_capacity.capacity,
            )

    def _record_counts(self, counts: torch.Tensor) -> None:
        """Hand a step's sample counts to the buffers' sizing: queued now (eager steps), or,
        with captured steps, written to a fixed tensor whose copy the next step queues."""
        assert self.sample_capacity is not None
        if not self._graphed:  # an eager step (also after captured ones stopped)
            self._queue_graph_counts()
            self.sample_capacity.record(counts)
        elif self._graph_counts is None:  # an eager step: allocated outside any graph
            self._graph_counts = counts.detach().clone()
        else:
            self._graph_counts.copy_(counts)

    def _uses_nerfacc(self, rays_o: torch.Tensor) -> bool:
        return self.estimator is not None and rays_o.is_cuda

    # -- sampling ------------------------------------------------------------------------------
    def _sample(self, rays_o: torch.Tensor, rays_d: torch.Tensor) -> RaySamples:
        cfg = self.cfg
        stratified = self.training and cfg.randomized
        if not self._uses_nerfacc(rays_o):
            if cfg.torch_sampling == "marching":
                return marching_samples(
                    rays_o,
                    rays_d,
                    self.bbox,
                    self.render_step_size,
                    stratified,
                    cfg.near_plane,
                    cfg.far_plane,
                )
            return uniform_samples(
                rays_o,
                rays_d,
                self.bbox,
                cfg.num_samples_per_ray,
                stratified,
                cfg.near_plane,
                cfg.far_plane,
            )
        prune = cfg.grid_prune and cfg.prune_alpha_threshold
        if cfg.grid_prune and not self._grid_filled:  # e.g. `studio test` right after loading
            self._fill_grid()

        def sigma_fn(
            t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor
        ) -> torch.Tensor:
            if t_starts.numel() == 0:
                return t_starts
            t_mid = (t_starts + t_ends)[:, None] / 2.0
            points = rays_o[ray_indices] + rays_d[ray_indices] * t_mid
            return self._chunked(self.geometry.forward_density, points)[..., 0]

        options = dict(
            near_plane=cfg.near_plane,
            far_plane=cfg.far_plane,
            stratified=stratified,
            sigma_fn=sigma_fn if prune else None,
            alpha_threshold=0.01 if prune else 0.0,
            early_stop_eps=1e-4 if cfg.grid_prune else 0.0,
        )
        with torch.no_grad():
            if self.single_sync_marching:
                ray_indices, t_starts, t_ends = march(
                    self.estimator, rays_o, rays_d, step_size=self.render_step_size, **options
                )
            else:  # nerfacc's own wrapper (six host syncs), kept for comparison
                ray_indices, t_starts, t_ends = self.estimator.sampling(
                    rays_o,
                    rays_d,
                    sigma_fn=options["sigma_fn"],
                    near_plane=cfg.near_plane,
                    far_plane=cfg.far_plane,
                    render_step_size=self.render_step_size,
                    alpha_thre=options["alpha_threshold"],
                    early_stop_eps=options["early_stop_eps"],
                    stratified=stratified,
                    cone_angle=0.0,
                )
        return RaySamples(ray_indices.long(), t_starts, t_ends, (t_starts + t_ends) / 2.0)

    def _uses_fixed_capacity(self, rays_o: torch.Tensor) -> bool:
        cfg = self.cfg
        marching = self._uses_nerfacc(rays_o) or cfg.torch_sampling == "marching"
        return cfg.fixed_capacity and self.training and marching

    def _occupancy(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``(binaries, aabb [6], alpha threshold)`` the fixed march skips cells and samples by:
        nerfacc's grid and ``min(0.01, mean occupancy)``; on the torch path one occupied cell
        over the box and 0.01 (its pruning, ``visible_uniform``)."""
        if self._uses_nerfacc(like):
            assert self.estimator is not None
            if self.cfg.grid_prune and not self._grid_filled:
                self._fill_grid()
            threshold = self.estimator.occs.mean().clamp(max=0.01)
            return self.estimator.binaries, self.estimator.aabbs[0], threshold
        one_cell = torch.ones(1, 1, 1, dtype=torch.bool, device=like.device)
        return one_cell, self.bbox.reshape(-1), 0.01

    def _sample_fixed(self, rays_o: torch.Tensor, rays_d: torch.Tensor) -> CapacitySamples:
        """The marching samples in fixed-size buffers (no host sync once they are sized: the
        first call waits once to learn the counts)."""
        cfg = self.cfg
        binaries, aabb, threshold = self._occupancy(rays_o)
        prune = cfg.grid_prune and cfg.prune_alpha_threshold

        def march_with(capacity: tuple[int, int]) -> CapacitySamples:
            return capacity_march(
                rays_o,
                rays_d,
                binaries=binaries,
                aabb=aabb,
                step_size=self.render_step_size,
                near_plane=cfg.near_plane,
                far_plane=cfg.far_plane,
                stratified=cfg.randomized,
                density_fn=self.geometry.forward_density if prune else None,
                alpha_threshold=threshold if prune else 0.0,
                early_stop_eps=1e-4 if cfg.grid_prune else 0.0,
                capacity=capacity,
                steps_per_ray=self.marching_steps,
            )

        with torch.no_grad():
            if self.sample_capacity is None:
                every = rays_o.shape[0] * self.marching_steps
                counts = march_with((every, every)).counts.tolist()
                self.sample_capacity = SampleCapacity((counts[0] * 1.25, counts[1] * 1.25))
            elif not self._graphed:  # else sized before the step, by graph_state
                self._warn_if_overflowed(self.sample_capacity.update())
            samples = march_with(self.sample_capacity.capacity)
        self._record_counts(samples.counts)
        return samples

    def _chunked(self, fn, points: torch.Tensor) -> Any:
        if self.training or points.shape[0] <= self.cfg.eval_chunk_size:
            return fn(points)
        parts = [fn(chunk) for chunk in points.split(self.cfg.eval_chunk_size)]
        if isinstance(parts[0], dict):
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return torch.cat(parts)

    def _weights(
        self,
        density: torch.Tensor,
        samples: RaySamples,
        shaded: Optional[torch.Tensor],
        n_rays: int,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(weights, surviving)`` of the shaded samples (``density [n]`` at the positions
        ``shaded`` of ``samples``; None: all of them): ``surviving`` (bool ``[n]``) marks those
        nerfacc's marching would keep, None when all survive."""
        if samples.samples_per_ray is None:  # nerfacc: it returned the surviving samples only
            import nerfacc

            weights, _, _ = nerfacc.render_weight_from_density(
                samples.t_starts,
                samples.t_ends,
                density,
                ray_indices=samples.ray_indices,
                n_rays=n_rays,
            )
            return weights, None
        n_samples = samples.samples_per_ray
        if shaded is not None:  # padding samples hold no density
            density = density.new_zeros(samples.t_starts.shape[0]).index_copy(0, shaded, density)
        surviving = None
        if self.cfg.grid_prune:
            # The torch path drops the samples nerfacc's marching would skip, so both paths
            # train alike: no gradient reaches near-empty space (without this, SDS on the CPU
            # could grow density into the whole box; docs/primitives.md).
            surviving = visible_uniform(
                density,
                samples.t_starts,
                samples.t_ends,
                n_rays,
                n_samples,
                min_alpha=0.01 if self.cfg.prune_alpha_threshold else 0.0,
                early_stop_eps=1e-4,
                step_size=self.render_step_size,
            )
            density = density * surviving
        weights = weights_from_density_uniform(
            density, samples.t_starts, samples.t_ends, n_rays, n_samples
        )
        if shaded is not None:
            weights = weights[shaded]
            surviving = None if surviving is None else surviving[shaded]
        return weights, surviving

    # -- rendering -----------------------------------------------------------------------------
    def _render_rays(
        self, rays_o: torch.Tensor, rays_d: torch.Tensor, lights: torch.Tensor, **kwargs: Any
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-ray results (``PER_RAY`` keys) and per-sample results of a flat set of rays."""
        n_rays = rays_o.shape[0]
        if self._uses_fixed_capacity(rays_o):
            return self._render_rays_fixed(rays_o, rays_d, lights, **kwargs)
        samples = self._sample(rays_o, rays_d)
        shaded = None if samples.valid is None else samples.valid.nonzero().squeeze(1)
        idx, t_points, t_intervals = (
            (samples.ray_indices, samples.t_points, samples.t_ends - samples.t_starts)
            if shaded is None
            else (
                samples.ray_indices[shaded],
                samples.t_points[shaded],
                (samples.t_ends - samples.t_starts)[shaded],
            )
        )
        if idx.numel() == 0:
            return self._empty(rays_o), {}
        t_dirs = rays_d[idx]
        positions = rays_o[idx] + t_dirs * t_points[:, None]
        need_normal = bool(
            self.material.requires_normal or self.cfg.return_comp_normal or not self.training
        )

        def shade(chunk: torch.Tensor) -> dict[str, torch.Tensor]:
            return self.geometry(chunk, output_normal=need_normal)

        geo = self._chunked(shade, positions)
        material_inputs = {k: v for k, v in geo.items() if k != "density"}
        rgb = self._chunked_material(material_inputs, t_dirs, positions, lights[idx], kwargs)
        weights, surviving = self._weights(geo["density"].reshape(-1), samples, shaded, n_rays)
        if surviving is not None and self.training:
            # per-sample outputs hold the surviving samples only, as nerfacc's do (the dropped
            # ones have zero weight: per-ray sums are unchanged)
            keep = surviving.nonzero().squeeze(1)
            idx, t_points, t_intervals, t_dirs, positions, rgb, weights = (
                x[keep] for x in (idx, t_points, t_intervals, t_dirs, positions, rgb, weights)
            )
            geo = {k: v[keep] for k, v in geo.items()}

        return self._composite(
            idx, t_points, t_intervals, t_dirs, positions, rgb, weights, geo, n_rays
        )

    def _render_rays_fixed(
        self, rays_o: torch.Tensor, rays_d: torch.Tensor, lights: torch.Tensor, **kwargs: Any
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """:meth:`_render_rays` for training on fixed-capacity buffers: every slot is shaded
        (padding slots get zero weight), so no size depends on the data."""
        samples = self._sample_fixed(rays_o, rays_d)
        idx, t_points = samples.ray_indices, samples.t_points
        t_dirs = rays_d[idx]
        positions = rays_o[idx] + t_dirs * t_points[:, None]
        need_normal = bool(self.material.requires_normal or self.cfg.return_comp_normal)
        geo = self.geometry(positions, output_normal=need_normal)
        material_inputs = {k: v for k, v in geo.items() if k != "density"}
        rgb = self._chunked_material(material_inputs, t_dirs, positions, lights[idx], kwargs)
        weights = dense_weights(geo["density"].reshape(-1), samples)
        per_ray, per_sample = self._composite(
            idx,
            t_points,
            samples.t_ends - samples.t_starts,
            t_dirs,
            positions,
            rgb,
            weights,
            geo,
            rays_o.shape[0],
        )
        per_sample["sample_valid"] = samples.valid
        return per_ray, per_sample

    def _composite(
        self,
        idx: torch.Tensor,
        t_points: torch.Tensor,
        t_intervals: torch.Tensor,
        t_dirs: torch.Tensor,
        positions: torch.Tensor,
        rgb: torch.Tensor,
        weights: torch.Tensor,
        geo: dict[str, torch.Tensor],
        n_rays: int,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-ray and per-sample results of shaded samples (ray ``idx``, ``weights``...)."""
        # One weighted sum per ray for opacity, depth, colour and normal together (fewer kernels
        # in a launch-bound step): columns [1 | t | rgb | normal].
        t_points = t_points[:, None]
        columns = [torch.ones_like(t_points), t_points, rgb]
        if "normal" in geo:
            columns.append(geo["normal"])
        sums = accumulate(torch.cat(columns, dim=-1), weights, idx, n_rays)
        channels = rgb.shape[-1]
        opacity, depth, fg = sums[:, :1], sums[:, 1:2], sums[:, 2 : 2 + channels]
        safe_opacity = opacity.clamp(min=1e-10)
        normalized = weights / safe_opacity[idx, 0]
        z_mean = depth / safe_opacity
        z_variance = accumulate((t_points - z_mean[idx]) ** 2, normalized, idx, n_rays)
        per_ray = {"opacity": opacity, "depth": depth, "comp_rgb_fg": fg, "z_variance": z_variance}
        if "normal" in geo:
            summed = sums[:, 2 + channels :]
            per_ray["comp_normal"] = (F.normalize(summed, dim=-1) + 1.0) / 2.0 * opacity
        per_sample = {
            "weights": weights[:, None],
            "t_points": t_points,
            "t_intervals": t_intervals[:, None],
            "t_dirs": t_dirs,
            "ray_indices": idx,
            "points": positions,
            **geo,
        }
        if self.cfg.return_normal_perturb and self.training:
            jittered = positions + torch.randn_like(positions) * 0.01
            per_sample["normal_perturb"] = self.geometry(jittered, output_normal=True)["normal"]
        return per_ray, per_sample

    def _chunked_material(
        self,
        geo: dict[str, torch.Tensor],
        dirs: torch.Tensor,
        positions: torch.Tensor,
        lights: torch.Tensor,
        kwargs: dict[str, Any],
    ) -> torch.Tensor:
        n = positions.shape[0]
        step = n if self.training else self.cfg.eval_chunk_size
        parts = []
        for start in range(0, n, step):
            sl = slice(start, start + step)
            parts.append(
                self.material(
                    viewdirs=dirs[sl],
                    positions=positions[sl],
                    light_positions=lights[sl],
                    **{k: v[sl] for k, v in geo.items()},
                    **kwargs,
                )
            )
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _empty(self, rays_o: torch.Tensor) -> dict[str, torch.Tensor]:
        n = rays_o.shape[0]
        zeros = rays_o.new_zeros(n, 1)
        channels = getattr(self.background.cfg, "n_output_dims", 3)
        out = {
            "opacity": zeros,
            "depth": zeros,
            "z_variance": zeros,
            "comp_rgb_fg": rays_o.new_zeros(n, channels),
        }
        out["comp_normal"] = rays_o.new_zeros(n, 3)
        return out

    def _rays_per_chunk(self, rays_o: torch.Tensor) -> int:
        if self.training:
            return rays_o.shape[0]
        if self._uses_nerfacc(rays_o):
            return max(1, self.cfg.eval_chunk_size)
        return max(1, self.cfg.eval_chunk_size // self.cfg.num_samples_per_ray)

    def forward(
        self,
        rays_o: torch.Tensor,
        rays_d: torch.Tensor,
        light_positions: torch.Tensor,
        bg_color: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Render ``[B, H, W, 3]`` rays; returns ``comp_rgb``, ``comp_rgb_fg``, ``comp_rgb_bg``,
        ``opacity``, ``depth``, ``z_variance``, ``comp_normal`` (``[B, H, W, C]``) and, in
        training, the per-sample ``weights``, ``t_points``, ``t_intervals``, ``t_dirs``,
        ``ray_indices``, ``points`` and geometry outputs."""
        batch, height, width = rays_o.shape[:3]
        flat_o = rays_o.reshape(-1, 3)
        flat_d = rays_d.reshape(-1, 3)
        lights = (
            light_positions.reshape(batch, 1, 1, 3).expand(batch, height, width, 3).reshape(-1, 3)
        )
        shading_kwargs = {k: v for k, v in kwargs.items() if k in ("ambient_ratio", "shading")}
        chunk = self._rays_per_chunk(flat_o)
        per_ray_parts: list[dict[str, torch.Tensor]] = []
        per_sample: dict[str, torch.Tensor] = {}
        for start in range(0, flat_o.shape[0], chunk):
            sl = slice(start, start + chunk)
            per_ray, per_sample = self._render_rays(
                flat_o[sl], flat_d[sl], lights[sl], **shading_kwargs
            )
            per_ray_parts.append(per_ray)
        keys = set.intersection(*(set(p) for p in per_ray_parts))
        out = {
            k: torch.cat([p[k] for p in per_ray_parts]).reshape(batch, height, width, -1)
            for k in keys
        }
        if bg_color is None:
            comp_bg = self.background(dirs=rays_d)
        else:  # one colour [C], one per image [B, C], or a full image [B, H, W, C]
            channels = bg_color.shape[-1]
            if bg_color.dim() < 4:
                bg_color = bg_color.reshape(-1, 1, 1, channels)
            comp_bg = bg_color.expand(batch, height, width, channels)
        out["comp_rgb_bg"] = comp_bg
        out["comp_rgb"] = out["comp_rgb_fg"] + comp_bg * (1.0 - out["opacity"])
        if self.training:
            out.update(per_sample)
        return out


def _ignore_estimator_keys(module: torch.nn.Module, incompatible: Any) -> None:
    module._grid_filled = False  # the geometry may have changed: refill before the next use
    for keys in (incompatible.missing_keys, incompatible.unexpected_keys):
        keys[:] = [k for k in keys if ".estimator." not in f".{k}"]
