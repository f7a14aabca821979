"""The occupancy grid's update with no host sync, written in place.

nerfacc's ``OccGridEstimator._update`` waits for the GPU three times per update (boolean-mask
selections, ``nonzero`` of the occupied cells, the mean of the valid cells) and *replaces* its
``binaries`` tensor each time: a captured CUDA graph would go on reading the old grid. This is
the same update for a one-level grid whose cells are all visible (studio never marks cells
invisible), with every size known before it runs:

* during the warm-up (``step < warmup_steps``) every cell is evaluated, as nerfacc does;
* after it, ``cells / 4`` cells drawn uniformly plus ``cells / 4`` drawn uniformly among the
  occupied ones, with replacement (nerfacc takes every occupied cell once when there are fewer
  than that; with none occupied the second draw falls on the last cell);
* each evaluated cell's occupancy is ``density(x) * step`` at a point ``x`` jittered inside it;
  a cell becomes ``max(decay * old, new)``, the largest new value when a cell was drawn twice
  (nerfacc keeps one of them at random);
* ``binaries = occs > min(threshold, mean(occs))``, copied into the existing tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

OccupancyFn = Callable[[torch.Tensor], torch.Tensor]


def cells_to_update(binaries: torch.Tensor, step: int, warmup_steps: int) -> torch.Tensor:
    """Flat indices of the cells to evaluate at ``step`` (long ``[cells]`` in the warm-up, else
    ``[cells // 2]``: uniform, then occupied)."""
    flat = binaries.reshape(-1)
    cells = flat.shape[0]
    if step < warmup_steps:
        return torch.arange(cells, device=flat.device)
    n = cells // 4
    uniform = torch.randint(cells, (n,), device=flat.device)
    # the k-th occupied cell is the first whose running count of occupied cells exceeds k
    running = torch.cumsum(flat, 0)
    k = torch.floor(torch.rand(n, device=flat.device) * running[-1]).long()
    occupied = torch.searchsorted(running, k, right=True).clamp(max=cells - 1)
    return torch.cat([uniform, occupied])


@torch.no_grad()
def update_occupancy(
    estimator: Any,
    step: int,
    occupancy_fn: OccupancyFn,
    *,
    threshold: float = 0.01,
    ema_decay: float = 0.95,
    warmup_steps: int = 256,
) -> None:
    """Update ``estimator`` (a one-level nerfacc ``OccGridEstimator``: ``occs [cells]``,
    ``binaries [1, X, Y, Z]``, ``grid_coords [cells, 3]``, ``resolution [3]``, ``aabbs [1, 6]``)
    as its ``_update(step, ...)`` does (module docstring), in place and without a host sync.
    ``occupancy_fn`` maps points ``[N, 3]`` to occupancies ``[N, 1]`` or ``[N]``."""
    occs, binaries = estimator.occs, estimator.binaries
    indices = cells_to_update(binaries, step, warmup_steps)
    coords = estimator.grid_coords[indices]
    unit = (coords + torch.rand_like(coords, dtype=torch.float32)) / estimator.resolution
    low, high = estimator.aabbs[0, :3], estimator.aabbs[0, 3:]
    occupancy = occupancy_fn(low + unit * (high - low)).reshape(-1).to(occs.dtype)
    updated = occs.clone()
    updated[indices] = occs[indices] * ema_decay
    updated.scatter_reduce_(0, indices, occupancy, reduce="amax")
    occs.copy_(updated)
    level = occs.mean().clamp(max=threshold)
    binaries.copy_((occs > level).view(binaries.shape))
