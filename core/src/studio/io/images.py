"""Image conversion and grids (numpy in, ``uint8`` HWC out)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from studio.errors import StudioError

Colormap = Optional[Literal["jet", "spectral"]]


def to_numpy(img: Any) -> np.ndarray:
    """A float32 numpy array from a numpy array or (any-device, any-dtype) torch tensor."""
    if hasattr(img, "detach"):
        img = img.detach().float().cpu().numpy()
    return np.asarray(img, dtype=np.float32)


def _squeeze_batch(img: np.ndarray) -> np.ndarray:
    while img.ndim > 3 and img.shape[0] == 1:
        img = img[0]
    return img


def rgb_to_uint8(img: Any, data_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """HWC (or 1HWC) values in ``data_range`` -> HW3 uint8 (extra channels are dropped)."""
    arr = _squeeze_batch(to_numpy(img))
    lo, hi = data_range
    arr = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return (arr[..., :3] * 255.0 + 0.5).astype(np.uint8)


def _jet(x: np.ndarray) -> np.ndarray:
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return np.stack([r, g, b], axis=-1)


#: Anchors of the ``spectral`` map, evenly spaced from 0 to 1: dark red, orange, pale yellow,
#: green, blue-violet (a diverging red-to-blue ramp; chosen here, not taken from a palette file).
SPECTRAL_ANCHORS = np.array(
    [
        [0.60, 0.00, 0.25],
        [0.93, 0.35, 0.22],
        [0.99, 0.80, 0.45],
        [0.98, 0.98, 0.75],
        [0.62, 0.85, 0.60],
        [0.25, 0.60, 0.72],
        [0.37, 0.30, 0.64],
    ]
)


def _spectral(x: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation between :data:`SPECTRAL_ANCHORS` (0: red, 1: violet)."""
    grid = np.linspace(0.0, 1.0, len(SPECTRAL_ANCHORS))
    return np.stack([np.interp(x, grid, SPECTRAL_ANCHORS[:, c]) for c in range(3)], axis=-1)


def grayscale_to_uint8(
    img: Any, data_range: Optional[tuple[float, float]] = (0.0, 1.0), cmap: Colormap = None
) -> np.ndarray:
    """HW / HW1 values -> HW3 uint8; ``data_range=None`` normalises by the image's min/max."""
    arr = _squeeze_batch(to_numpy(img))
    if arr.ndim == 3:
        arr = arr[..., 0]
    if data_range is None:
        lo, hi = float(arr.min()), float(arr.max())
        hi = hi if hi > lo else lo + 1.0
    else:
        lo, hi = data_range
    arr = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    if cmap == "jet":
        colour = _jet(arr)
    elif cmap == "spectral":
        colour = _spectral(arr)
    else:
        colour = np.repeat(arr[..., None], 3, axis=-1)
    return (colour * 255.0 + 0.5).astype(np.uint8)


def _resize_nearest(img: np.ndarray, height: int, width: int) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img
    rows = (np.arange(height) * img.shape[0] / height).astype(int)
    cols = (np.arange(width) * img.shape[1] / width).astype(int)
    return img[rows][:, cols]


def image_grid(columns: list[np.ndarray]) -> np.ndarray:
    """Concatenate uint8 images left to right, each resized (nearest) to the largest H and W."""
    height = max(c.shape[0] for c in columns)
    width = max(c.shape[1] for c in columns)
    return np.concatenate([_resize_nearest(c, height, width) for c in columns], axis=1)


def write_png(path: Path, img: np.ndarray) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, img, extension=".png")


def write_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    """mp4 or gif (chosen by the suffix), written atomically.

    mp4 uses H.264 through imageio-ffmpeg; where that is not installed, OpenCV's MPEG-4 writer.
    """
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    if path.suffix == ".gif":
        imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0)
    elif importlib.util.find_spec("imageio_ffmpeg") is not None:
        imageio.mimsave(tmp, frames, fps=fps, macro_block_size=1, quality=8)
    elif importlib.util.find_spec("cv2") is not None:
        _write_mp4_opencv(tmp, frames, fps)
    else:
        raise StudioError(
            f"Cannot write {path.name}: mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg) or "
            f"OpenCV (pip install opencv-python-headless). The frames are in {path.parent}."
        )
    tmp.replace(path)


def _write_mp4_opencv(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def read_video(path: Path) -> np.ndarray:
    """All frames of a video ``[N, H, W, 3]`` uint8 (imageio-ffmpeg, else OpenCV)."""
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    return np.stack(frames)
