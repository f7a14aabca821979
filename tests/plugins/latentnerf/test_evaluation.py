"""``guide-silhouette-iou`` against silhouettes found another way: each test camera's rays
marched through the guide's inside indicator (libigl winding numbers), no rasterizer."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from studio.data.random_camera import RandomCameraDataModule
from studio.eval import EvalContext
from studio_latentnerf.evaluation import evaluate, silhouette_iou
from studio_latentnerf.guide_shapes import load_guide_shape
from studio_latentnerf.shape_loss import place_guide_mesh, winding_numbers

SIZE = 32
DATA = {"eval_width": SIZE, "eval_height": SIZE, "n_test_views": 4, "eval_fovy_deg": 55.0,
        "eval_camera_distance": 2.0, "eval_elevation_deg": 20.0}  # fmt: skip


def marched_silhouettes(shape: str, samples: int = 160) -> np.ndarray:
    """``bool [views, SIZE, SIZE]``: some point of the pixel's ray inside the placed guide."""
    mesh = load_guide_shape(shape)
    vertices = place_guide_mesh(mesh.vertices)
    masks = []
    for batch in RandomCameraDataModule(DATA).test_batches():
        origins = batch["rays_o"][0].reshape(-1, 1, 3).double().numpy()
        directions = batch["rays_d"][0].reshape(-1, 1, 3).double().numpy()
        depths = np.linspace(1.0, 3.0, samples).reshape(1, -1, 1)
        points = (origins + depths * directions).reshape(-1, 3)
        inside = winding_numbers(vertices, mesh.faces, points) > 0.5
        masks.append(inside.reshape(SIZE * SIZE, samples).any(axis=1).reshape(SIZE, SIZE))
    return np.stack(masks)


def write_run(root: Path, guide: str | None, opacity: np.ndarray) -> EvalContext:
    """A run directory whose test frames are grey rgb | the given opacity masks."""
    folder = root / "save" / "it10-test"
    folder.mkdir(parents=True)
    for index, mask in enumerate(opacity):
        column = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=-1)
        iio.imwrite(folder / f"{index}.png", np.concatenate([column * 0 + 128, column], axis=1))
    config = {"system": {"guide_shape": guide}, "data": DATA}
    return EvalContext(root, config, 10, [], "a red cube")


@pytest.mark.parametrize("shape", ["cube", "teddy"])
def test_the_guide_s_own_silhouettes_score_close_to_one(shape: str, tmp_path: Path) -> None:
    metrics = evaluate(write_run(tmp_path, shape, marched_silhouettes(shape)))
    print(shape, metrics)
    # pixels whose centre ray grazes an edge can differ between ray marching and rasterization
    assert metrics["frames"] == 4 and metrics["iou_min"] >= 0.95


def test_another_shape_scores_lower(tmp_path: Path) -> None:
    metrics = evaluate(write_run(tmp_path, "cube", marched_silhouettes("torus")))
    assert metrics["iou_mean"] < 0.8


def test_a_run_without_a_guide_is_not_applicable(tmp_path: Path) -> None:
    metrics = evaluate(write_run(tmp_path, None, np.zeros((4, SIZE, SIZE), dtype=bool)))
    assert metrics["applicable"] is False


def test_iou_of_masks() -> None:
    a = np.array([[1, 1, 0, 0]], dtype=bool)
    assert silhouette_iou(a, np.array([[0, 1, 1, 0]], dtype=bool)) == pytest.approx(1 / 3)
    assert silhouette_iou(a * False, a * False) == 1.0
