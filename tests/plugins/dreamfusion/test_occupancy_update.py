"""The occupancy grid's sync-free update: nerfacc's rules on a stand-in grid on the CPU, in place;
bit-equal to nerfacc's own ``_update`` in the warm-up on CUDA."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from studio_dreamfusion.renderers.occupancy_update import cells_to_update, update_occupancy
from tests.plugins.dreamfusion.marching_scene import lumpy_ball

STEP = 0.007


def stand_in_grid(resolution: int = 16) -> SimpleNamespace:
    """The buffers of a one-level ``OccGridEstimator`` over [-1, 1]^3, built as nerfacc does."""
    axes = [torch.arange(resolution)] * 3
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return SimpleNamespace(
        occs=torch.zeros(resolution**3),
        binaries=torch.zeros(1, resolution, resolution, resolution, dtype=torch.bool),
        grid_coords=coords,
        resolution=torch.tensor([resolution] * 3, dtype=torch.int32),
        aabbs=torch.tensor([[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]]),
    )


def occupancy(points: torch.Tensor) -> torch.Tensor:
    return lumpy_ball(points)[:, None] * STEP


def test_warm_up_evaluates_every_cell_and_thresholds_in_place():
    grid = stand_in_grid()
    occs_storage, binaries_storage = grid.occs.data_ptr(), grid.binaries.data_ptr()
    grid.occs.fill_(0.5)
    torch.manual_seed(0)
    update_occupancy(grid, 0, occupancy, ema_decay=0.95)
    torch.manual_seed(0)
    jitter = torch.rand(grid.grid_coords.shape)
    points = (grid.grid_coords + jitter) / 16 * 2.0 - 1.0
    expected = torch.maximum(torch.full((16**3,), 0.5 * 0.95), occupancy(points)[:, 0])
    torch.testing.assert_close(grid.occs, expected)
    level = min(0.01, float(expected.mean()))
    assert torch.equal(grid.binaries.reshape(-1), expected > level)
    assert grid.occs.data_ptr() == occs_storage and grid.binaries.data_ptr() == binaries_storage


def test_after_warm_up_half_the_cells_are_drawn_a_quarter_among_the_occupied():
    grid = stand_in_grid()
    update_occupancy(grid, 0, occupancy)
    occupied = grid.binaries.reshape(-1)
    assert 0.05 < float(occupied.float().mean()) < 0.5
    torch.manual_seed(1)
    drawn = cells_to_update(grid.binaries, 300, warmup_steps=256)
    quarter = 16**3 // 4
    assert drawn.shape == (2 * quarter,)
    assert occupied[drawn[quarter:]].all()  # the second half: occupied cells only
    share = float(occupied[drawn[:quarter]].float().mean())  # the first: uniform
    assert abs(share - float(occupied.float().mean())) < 0.05
    # with nothing occupied the second draw stays inside the grid
    empty = torch.zeros_like(grid.binaries)
    assert int(cells_to_update(empty, 300, warmup_steps=256).max()) < 16**3


def test_a_cell_keeps_the_largest_of_its_decayed_value_and_new_ones():
    grid = stand_in_grid(resolution=4)
    grid.occs.fill_(1.0)
    grid.binaries.fill_(True)
    torch.manual_seed(2)
    update_occupancy(grid, 1000, lambda x: torch.zeros(x.shape[0], 1), ema_decay=0.5)
    torch.manual_seed(2)
    drawn = cells_to_update(grid.binaries.clone().fill_(True), 1000, warmup_steps=256)
    touched = torch.zeros(64, dtype=torch.bool)
    touched[drawn] = True
    assert torch.equal(
        grid.occs, torch.where(touched, 0.5, 1.0)
    )  # once decayed, drawn twice or not
    assert grid.binaries.reshape(-1).all()  # every value above min(0.01, mean)


@pytest.mark.gpu
def test_warm_up_update_equals_nerfaccs():
    """Same seed: the same occupancies and grid as ``OccGridEstimator._update`` in the warm-up,
    and a later update keeps the tensors it started with."""
    import nerfacc

    ours = nerfacc.OccGridEstimator(roi_aabb=[-1.0] * 3 + [1.0] * 3, resolution=32).cuda()
    theirs = nerfacc.OccGridEstimator(roi_aabb=[-1.0] * 3 + [1.0] * 3, resolution=32).cuda()
    torch.manual_seed(3)
    update_occupancy(ours, 0, occupancy)
    torch.manual_seed(3)
    theirs._update(step=0, occ_eval_fn=occupancy, occ_thre=0.01)
    assert torch.equal(ours.occs, theirs.occs)
    assert torch.equal(ours.binaries, theirs.binaries)
    storage = ours.binaries.data_ptr()
    update_occupancy(ours, 512, occupancy)
    assert ours.binaries.data_ptr() == storage
