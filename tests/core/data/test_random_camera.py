"""The random-camera data module: batch contents, milestones, evaluation orbits."""

from __future__ import annotations

import torch

from studio.data.random_camera import RandomCameraDataModule


def test_training_batch_shapes_and_unit_rays():
    torch.manual_seed(0)
    data = RandomCameraDataModule({"batch_size": 4, "height": 8, "width": 6})
    batch = data.train_batch()
    assert batch["rays_o"].shape == (4, 8, 6, 3) and batch["rays_d"].shape == (4, 8, 6, 3)
    assert torch.allclose(batch["rays_d"].norm(dim=-1), torch.ones(4, 8, 6), atol=1e-5)
    for key, shape in [("c2w", (4, 4, 4)), ("mvp_mtx", (4, 4, 4)), ("light_positions", (4, 3))]:
        assert batch[key].shape == shape
    # stratified azimuth: one sample in each quarter of [-180, 180)
    bins = ((batch["azimuth"] + 180) // 90).long().tolist()
    assert bins == [0, 1, 2, 3]


def test_resolution_milestones_switch_on_the_named_step():
    data = RandomCameraDataModule(
        {"height": [8, 16], "width": [8, 16], "batch_size": [4, 2], "resolution_milestones": [10]}
    )
    data.do_update_step(0, 9)
    assert data.train_batch()["rays_d"].shape == (4, 8, 8, 3)
    data.do_update_step(0, 10)
    assert data.train_batch()["rays_d"].shape == (2, 16, 16, 3)


def test_test_orbit_covers_the_full_circle():
    data = RandomCameraDataModule({"n_test_views": 5, "eval_height": 4, "eval_width": 4})
    views = data.test_batches()
    assert len(views) == 5
    assert [round(v["azimuth"].item()) for v in views] == [0, 90, 180, 270, 360]
    assert views[0]["elevation"].item() == 15.0
    assert torch.allclose(views[2]["camera_positions"].norm(), torch.tensor(1.5))
