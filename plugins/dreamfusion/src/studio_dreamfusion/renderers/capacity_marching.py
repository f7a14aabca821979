"""Occupancy-grid ray marching with no host sync: fixed-capacity sample buffers.

nerfacc's marching sizes its output by the number of samples that survive, so the host must
read that number before it can allocate (``occupancy_marching.march`` waits once per call). A
step that waits cannot be captured as a CUDA graph, and in a launch-bound step the GPU idles
while the host catches up. Here every tensor has a size known before the step runs:

1. every ray is marched densely with nerfacc's fixed step (:func:`volume.marching_samples`,
   ``[rays x steps]`` candidates, padded);
2. a candidate is *occupied* when its midpoint lies in an occupied cell of the grid (nerfacc's
   rule: a sample belongs to the cell holding its midpoint);
3. the occupied candidates are compacted, in ray order, into a buffer of ``capacity[0]`` slots;
   their density is evaluated without gradient and a sample is *kept* when its alpha at the
   marching step is at least the threshold and the transmittance in front of it (over the
   occupied samples) at least ``early_stop_eps`` -- nerfacc's ``sampling`` rules;
4. the kept samples are compacted into ``capacity[1]`` slots: the samples to shade.

Slots past the true count are *padding*: zero length and zero density, so they get zero weight
and no gradient; they are shaded at distinct real candidates' points (shading one point
thousands of times made the hash grid's backward collide on its table entries). When more
samples exist than slots, the buffer keeps the first ones in ray order (the last rays lose their
far samples) and the counts returned with the samples say so; :class:`SampleCapacity` reads those counts one step late,
without waiting, and grows the buffers (the caller decides whether to redo the step).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from studio.api import HostCopy
from studio_dreamfusion.renderers.volume import _optical_depths, marching_samples

DensityFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CapacitySamples:
    """``slots`` samples in ray order, padding last.

    ``dense_index [slots]``: each slot's candidate in the dense ``[rays x steps]`` layout
    (padding: the spare candidate ``rays * steps``; its other fields are read from candidate
    ``slot mod (rays * steps)``, with zero length); ``valid [slots]``: the real samples;
    ``counts [2]`` (int64, device): how many samples were occupied and kept, which may exceed
    the capacities.
    """

    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor
    t_points: torch.Tensor
    dense_index: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor
    n_rays: int
    steps_per_ray: int


def compact_slots(mask: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(slots [capacity], count)``: the positions of the first ``capacity`` true entries of the
    1-D ``mask`` in order, then the spare position ``len(mask)`` for the unused slots; ``count``
    (a 0-d device tensor) is the number of true entries, possibly above ``capacity``.

    A prefix sum ranks the true entries; each scatters its position to its rank. No host sync.
    """
    n = mask.shape[0]
    rank = torch.cumsum(mask, 0) - 1
    target = torch.where(mask & (rank < capacity), rank, capacity)
    positions = torch.arange(n, device=mask.device)
    slots = torch.full((capacity + 1,), n, dtype=torch.long, device=mask.device)
    slots.scatter_(0, target, positions)
    # the spare slot `capacity` took every position that did not fit; cut it off
    return slots[:capacity], rank[-1] + 1 if n else mask.new_zeros((), dtype=torch.long)


def occupied_cells(
    points: torch.Tensor, binaries: torch.Tensor, aabb: torch.Tensor
) -> torch.Tensor:
    """Whether each point ``[N, 3]`` lies in an occupied cell of ``binaries [X, Y, Z]`` (bool)
    spanning ``aabb [6]`` (min then max corner); points outside the box are not. The grid's
    size enters as Python ints, so nothing is copied to the device (no wait)."""
    unit = (points - aabb[:3]) / (aabb[3:] - aabb[:3])
    inside = torch.ones_like(unit[:, 0], dtype=torch.bool)
    flat = torch.zeros_like(unit[:, 0], dtype=torch.long)
    for axis, size in enumerate(binaries.shape):
        cell = torch.floor(unit[:, axis] * size).long()
        inside &= (cell >= 0) & (cell < size)
        flat = flat * size + cell.clamp(0, size - 1)
    return inside & binaries.reshape(-1)[flat]


def spread_padding(slots: torch.Tensor, n: int) -> torch.Tensor:
    """Candidates to *read* for ``slots`` from :func:`compact_slots` over ``n`` candidates: a
    real slot reads its own; padding slot ``j`` reads candidate ``j mod n`` instead of the spare,
    so the (zero-weight) padding is shaded at distinct points: thousands of copies of one point
    made the hash grid's backward collide on the same table entries (1.6x slower steps)."""
    spread = torch.arange(slots.shape[0], device=slots.device) % max(n, 1)
    return torch.where(slots < n, slots, spread)


def _with_spare(values: torch.Tensor, spare: float) -> torch.Tensor:
    """``values`` (flat) with one more entry, ``spare``, that padding slots point at."""
    return torch.cat([values, values.new_full((1,), spare)])


def capacity_march(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    *,
    binaries: torch.Tensor,
    aabb: torch.Tensor,
    step_size: float,
    near_plane: float,
    far_plane: float,
    stratified: bool,
    density_fn: DensityFn | None,
    alpha_threshold: float | torch.Tensor,
    early_stop_eps: float,
    capacity: tuple[int, int],
    steps_per_ray: int | None = None,
) -> CapacitySamples:
    """The samples nerfacc's ``OccGridEstimator.sampling`` keeps (``cone_angle=0``, one level),
    in fixed-size buffers (module docstring).

    ``binaries [X, Y, Z]`` and ``aabb [6]``: the occupancy grid; ``density_fn`` maps points
    ``[N, 3]`` to densities ``[N]`` or ``[N, 1]`` (None: keep every occupied sample);
    ``alpha_threshold`` may be a device tensor (nerfacc uses ``min(0.01, mean occupancy)``);
    ``steps_per_ray`` (:func:`volume.steps_per_ray`), when given, spares reading the box's size
    back from the device.
    """
    box = aabb.reshape(2, 3)
    dense = marching_samples(
        rays_o, rays_d, box, step_size, stratified, near_plane, far_plane, steps_per_ray
    )
    n_rays, steps = rays_o.shape[0], dense.samples_per_ray
    assert steps is not None and dense.valid is not None
    n = n_rays * steps
    flat_o = rays_o.repeat_interleave(steps, dim=0)
    flat_d = rays_d.repeat_interleave(steps, dim=0)
    midpoints = flat_o + flat_d * dense.t_points[:, None]
    occupied = dense.valid & occupied_cells(midpoints, binaries.reshape(binaries.shape[-3:]), aabb)
    kept = occupied
    slots_occupied, n_occupied = compact_slots(occupied, capacity[0])
    if density_fn is not None:
        with torch.no_grad():
            sigma = density_fn(midpoints[spread_padding(slots_occupied, n)]).reshape(-1).float()
            sigma = sigma * (slots_occupied < n).float()  # padding: density 0
            # every padding slot writes its 0 into the spare entry n, cut off after
            dense_sigma = sigma.new_zeros(n + 1).index_copy(0, slots_occupied, sigma)[:n]
            kept = occupied & keep_mask(
                dense_sigma, dense.t_starts, dense.t_ends, n_rays, steps,
                step_size, alpha_threshold, early_stop_eps,
            )  # fmt: skip
    slots, n_kept = compact_slots(kept, capacity[1])
    valid = slots < n
    read = spread_padding(slots, n)
    t_starts = dense.t_starts[read]
    return CapacitySamples(
        ray_indices=dense.ray_indices[read],
        t_starts=t_starts,
        t_ends=torch.where(valid, dense.t_ends[read], t_starts),  # padding: zero length
        t_points=dense.t_points[read],
        dense_index=slots,
        valid=valid,
        counts=torch.stack([n_occupied, n_kept]),
        n_rays=n_rays,
        steps_per_ray=steps,
    )


def keep_mask(
    sigma: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    n_rays: int,
    steps: int,
    step_size: float,
    alpha_threshold: float | torch.Tensor,
    early_stop_eps: float,
) -> torch.Tensor:
    """nerfacc's pruning of occupied samples (dense ``[rays x steps]`` layout, density 0 where no
    sample is occupied): alpha at the marching step ``1 - exp(-sigma * step_size)`` at least
    ``alpha_threshold`` and transmittance in front at least ``early_stop_eps`` (0 switches a test
    off)."""
    keep = torch.ones_like(sigma, dtype=torch.bool)
    if not (isinstance(alpha_threshold, float) and alpha_threshold <= 0.0):
        keep &= 1.0 - torch.exp(-sigma * step_size) >= alpha_threshold
    if early_stop_eps > 0.0:
        _, in_front = _optical_depths(sigma, t_starts, t_ends, n_rays, steps)
        keep &= (torch.exp(-in_front) >= early_stop_eps).reshape(-1)
    return keep


def dense_weights(density: torch.Tensor, samples: CapacitySamples) -> torch.Tensor:
    """Volume-rendering weights ``[slots]`` of the samples' densities ``[slots]``
    (differentiable): ``w_i = T_i (1 - exp(-sigma_i delta_i))`` with ``T_i`` the transmittance
    over the ray's kept samples in front of ``i`` (as nerfacc renders the samples it returns).

    The optical depths are scattered into the dense ``[rays x steps]`` layout (zero elsewhere),
    so a per-ray prefix sum gives every ``T_i`` at once; padding slots write 0 into the spare
    entry and get weight 0.
    """
    n = samples.n_rays * samples.steps_per_ray
    depth = density * (samples.t_ends - samples.t_starts) * samples.valid.to(density.dtype)
    dense = depth.new_zeros(n + 1).index_put((samples.dense_index,), depth)
    rows = dense[:n].reshape(samples.n_rays, samples.steps_per_ray)
    in_front = torch.cumsum(rows, dim=-1) - rows
    weights = (torch.exp(-in_front) * -torch.expm1(-rows)).reshape(-1)
    return _with_spare(weights, 0.0)[samples.dense_index]


class SampleCapacity:
    """The two buffer sizes of :func:`capacity_march`, sized from recent steps.

    :meth:`record` takes a step's ``counts`` tensor and starts copying it to the host without
    waiting; :meth:`update` reads the copies that have arrived (never waits) and returns True
    when a step needed more slots than it had (an *overflow*; the capacities are grown to the
    largest recent need times ``headroom``, rounded up to ``granule``). Capacities only grow,
    except that they shrink to the same target when the last ``window`` steps all needed less
    than a third of them.
    """

    def __init__(
        self,
        initial: tuple[int, int],
        headroom: float = 1.25,
        granule: int = 1 << 14,
        window: int = 200,
    ) -> None:
        self.capacity = (self._round(initial[0], granule), self._round(initial[1], granule))
        self.headroom, self.granule, self.window = headroom, granule, window
        self._pending: deque[tuple[HostCopy, tuple[int, int]]] = deque()
        self._recent: deque[tuple[int, int]] = deque(maxlen=window)
        self.overflows = 0

    @staticmethod
    def _round(n: float, granule: int) -> int:
        return max(granule, math.ceil(n / granule) * granule)

    def record(self, counts: torch.Tensor) -> None:
        """Queue a step's ``counts [2]`` (the capacities it ran with are remembered)."""
        self._pending.append((HostCopy(counts), self.capacity))

    def update(self, wait: bool = False) -> bool:
        """Take in the counts that have arrived (all of them with ``wait``); True on overflow."""
        overflow = arrived = False
        while self._pending and (wait or self._pending[0][0].ready()):
            copy, used = self._pending.popleft()
            need = tuple(int(n) for n in copy.get())
            self._recent.append(need)
            arrived = True
            if need[0] > used[0] or need[1] > used[1]:
                overflow = True
                self.overflows += 1
        if arrived:
            self._resize(overflow)
        return overflow

    def _resize(self, overflow: bool) -> None:
        peak = [max(n[i] for n in self._recent) for i in (0, 1)]
        target = tuple(self._round(p * self.headroom, self.granule) for p in peak)
        if overflow or any(t > c for t, c in zip(target, self.capacity, strict=True)):
            self.capacity = (max(target[0], self.capacity[0]), max(target[1], self.capacity[1]))
        elif len(self._recent) == self.window and all(
            p * 3 < c for p, c in zip(peak, self.capacity, strict=True)
        ):
            self.capacity = (target[0], target[1])
