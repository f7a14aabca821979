"""A small CNN that names the shape and colour of a primitives image.

:class:`ShapeColorClassifier` maps images ``float [N, 3, INPUT_SIZE, INPUT_SIZE]`` in ``[0, 1]`` to
two logit tensors, over :data:`~studio_primitives.shapes.SHAPES` and over
:data:`~studio_primitives.colors.COLORS` (in their declared order). The package ships trained
weights (``weights/classifier.safetensors``, fp16, written by
:mod:`studio_primitives.training.train_classifier`); :func:`load_classifier` loads them and :func:`predict`
classifies images of any size.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from studio.api import ConfigError
from studio_primitives.colors import COLORS
from studio_primitives.shapes import SHAPES

#: Height and width the classifier sees; :func:`prepare_images` resizes to it.
INPUT_SIZE = 48

#: Shipped weights, relative to the ``studio_primitives`` package.
WEIGHTS_RESOURCE = "weights/classifier.safetensors"

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

ImageBatch = Union[np.ndarray, torch.Tensor]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ShapeColorClassifier(nn.Module):
    """Four conv blocks (each halves the resolution), global average+max pooling, two heads."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, width // 2),
            _block(width // 2, width),
            _block(width, 2 * width),
            _block(2 * width, 2 * width),
        )
        self.shape_head = nn.Linear(4 * width, len(SHAPES))
        self.color_head = nn.Linear(4 * width, len(COLOR_NAMES))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` ``float [N, 3, H, W]`` in ``[0, 1]`` -> ``(shape logits, colour logits)``."""
        x = self.features(images * 2.0 - 1.0)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.shape_head(pooled), self.color_head(pooled)


def prepare_images(images: ImageBatch, size: int = INPUT_SIZE) -> torch.Tensor:
    """``[N, H, W, 3]`` (or one ``[H, W, 3]``) uint8 in ``[0, 255]`` or float in ``[0, 1]`` ->
    ``float32 [N, 3, size, size]`` in ``[0, 1]`` (antialiased bilinear resize)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ConfigError(
            f"The classifier needs images shaped [N, H, W, 3] (RGB, channels last); got shape "
            f"{tuple(x.shape)}. Drop the alpha channel or move channels last."
        )
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    else:
        x = x.float().clamp(0.0, 1.0)
    x = x.permute(0, 3, 1, 2).contiguous()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x


def default_weights_path() -> Path:
    """Path of the shipped weights file."""
    return Path(str(resources.files("studio_primitives").joinpath(WEIGHTS_RESOURCE)))


def save_classifier(model: ShapeColorClassifier, path: Union[str, Path]) -> Path:
    """Write ``model``'s weights as fp16 safetensors, atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }
    metadata = {
        "input_size": str(INPUT_SIZE),
        "shapes": ",".join(SHAPES),
        "colors": ",".join(COLOR_NAMES),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def load_classifier(path: Optional[Union[str, Path]] = None) -> ShapeColorClassifier:
    """The classifier in eval mode (float32) with weights from ``path`` (default: shipped ones).

    A file trained for other shape/colour lists is a :class:`ConfigError`.
    """
    if path is None:
        return _load_shipped()
    return _load(Path(path))


@functools.lru_cache(maxsize=1)
def _load_shipped() -> ShapeColorClassifier:
    return _load(default_weights_path())


def _load(path: Path) -> ShapeColorClassifier:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise ConfigError(
            f"No classifier weights at {path}. Train them with `studio primitives "
            f"train-classifier --out {path}` or reinstall studio-primitives."
        )
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("shapes") != ",".join(SHAPES) or metadata.get("colors") != ",".join(
        COLOR_NAMES
    ):
        raise ConfigError(
            f"The classifier weights {path} were trained for shapes {metadata.get('shapes')!r} and "
            f"colours {metadata.get('colors')!r}, not the installed {','.join(SHAPES)!r} and "
            f"{','.join(COLOR_NAMES)!r}. Retrain them with `studio primitives train-classifier`."
        )
    model = ShapeColorClassifier()
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state, strict=False)
    missing = set(k for k, v in model.state_dict().items() if v.is_floating_point()) - set(state)
    if missing:
        raise ConfigError(f"The classifier weights {path} lack {sorted(missing)}; retrain them.")
    return model.eval()


@torch.no_grad()
def predict_logits(
    images: ImageBatch, model: Optional[ShapeColorClassifier] = None, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(shape logits [N, len(SHAPES)], colour logits [N, len(COLORS)])`` of ``images``."""
    model = model if model is not None else load_classifier()
    x = prepare_images(images)
    shape_parts, color_parts = [], []
    for start in range(0, x.shape[0], batch_size):
        s, c = model(x[start : start + batch_size])
        shape_parts.append(s)
        color_parts.append(c)
    if not shape_parts:
        return torch.zeros(0, len(SHAPES)), torch.zeros(0, len(COLOR_NAMES))
    return torch.cat(shape_parts), torch.cat(color_parts)


def predict(
    images: ImageBatch, model: Optional[ShapeColorClassifier] = None
) -> list[tuple[str, str]]:
    """``(shape, colour)`` names for each image of ``images`` (see :func:`prepare_images`)."""
    shape_logits, color_logits = predict_logits(images, model)
    return [
        (SHAPES[int(s)], COLOR_NAMES[int(c)])
        for s, c in zip(
            shape_logits.argmax(-1).tolist(), color_logits.argmax(-1).tolist(), strict=True
        )
    ]
