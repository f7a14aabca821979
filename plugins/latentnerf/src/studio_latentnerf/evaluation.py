"""``guide-silhouette-iou``: how closely a Sketch-Shape run keeps its guide's silhouette.

For the run's latest test orbit (``save/it<step>-test/<index>.png``): the opacity column of each
frame (the grid's last column, ``data.eval_width`` wide) above 0.5, against the coverage of the
placed guide mesh (:func:`studio_latentnerf.shape_loss.place_guide_mesh`) rasterized through the
same camera, rebuilt from the run's ``data`` config (core's ``mesh_coverage``, as
``isosurface_threshold: auto`` compares meshes with renders). Reports the mean and the minimum IoU over
the frames; a run without ``system.guide_shape`` is reported as not applicable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.api import Mesh, RandomCameraDataModule, StudioError, make_rasterizer, mesh_coverage
from studio_latentnerf.guide_shapes import load_guide_shape
from studio_latentnerf.shape_loss import place_guide_mesh

#: Opacity (0-255 in the frames) above which a pixel counts as covered.
OPACITY_THRESHOLD = 0.5


def silhouette_iou(covered: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1 when both are empty)."""
    union = np.logical_or(covered, target).sum()
    return 1.0 if union == 0 else float(np.logical_and(covered, target).sum() / union)


def opacity_masks(folder: Path, column_width: int) -> np.ndarray:
    """``bool [N, H, W]``: the last column of every test frame in ``folder``, in index order,
    above :data:`OPACITY_THRESHOLD`."""
    import imageio.v3 as iio

    paths = sorted(folder.glob("*.png"), key=lambda p: (len(p.stem), p.stem))
    masks = []
    for path in paths:
        grid = np.asarray(iio.imread(path))
        column = grid[:, -column_width:]
        grey = column if column.ndim == 2 else column[..., :3].mean(axis=-1)
        masks.append(grey > OPACITY_THRESHOLD * 255)
    return np.stack(masks)


def evaluate(context: Any) -> dict[str, Any]:
    """The evaluator registered as ``guide-silhouette-iou`` (context: ``studio.api.EvalContext``)."""
    system = context.config.get("system") or {}
    guide = system.get("guide_shape")
    if not guide:
        return {"applicable": False, "reason": "the run has no system.guide_shape"}
    data = context.config.get("data") or {}
    width = int(data["eval_width"])
    folder = context.test_dir or Path(context.run_dir) / "save" / f"it{context.step}-test"
    masks = opacity_masks(Path(folder), width)
    cameras = RandomCameraDataModule(data).test_batches()
    if len(cameras) != len(masks):
        raise StudioError(
            f"{context.run_dir} has {len(masks)} test frames but its data config gives "
            f"{len(cameras)} test views; render the orbit again with `studio test "
            f"{context.run_dir}` and run `studio eval` again."
        )
    mesh = load_guide_shape(guide, "system.guide_shape")
    placed = Mesh(
        torch.as_tensor(place_guide_mesh(mesh.vertices), dtype=torch.float32),
        torch.as_tensor(mesh.faces),
    )
    views = [cameras[i] for i in range(len(cameras))]
    targets = (mesh_coverage(placed, views, make_rasterizer("torch")) > 0).numpy()
    scores = [silhouette_iou(a, b) for a, b in zip(masks, targets, strict=True)]
    return {
        "guide_shape": guide,
        "frames": len(scores),
        "iou_mean": float(np.mean(scores)),
        "iou_min": float(np.min(scores)),
    }
