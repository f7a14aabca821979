"""Train the shape-and-colour classifier on generator renders (CPU, a few minutes).

Training images come from :func:`studio_primitives.data.generate` (seed ``--seed``) with each
sample's albedo varied by :class:`~studio_primitives.data.AlbedoJitter` (3D runs reach their colour
only approximately: a black object rendered as a soft volume is dark grey, not 4% grey), augmented
per batch with random scale/translation jitter (zooming out repeats the border, i.e. the
background), horizontal flips, mild blur and pixel noise, because renders of 3D runs are less clean
than the generator's. Accuracy is reported on a held-out data set (seed ``--seed + 1000``), both on
its exact colours and with the albedo jitter.
The weights are written as fp16 safetensors, atomically.

CLI: ``studio primitives train-classifier --out PATH --n 4800 --seed 0 --epochs 12`` (or
``python -m studio_primitives.training.train_classifier ...``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from studio_primitives.classifier import (
    COLOR_NAMES,
    ShapeColorClassifier,
    default_weights_path,
    prepare_images,
    save_classifier,
)
from studio_primitives.data import AlbedoJitter, generate
from studio_primitives.shapes import SHAPES

HELD_OUT_SEED_OFFSET = 1000
RENDER_SIZE = 64


def render_set(
    n: int, seed: int, jitter: Optional[AlbedoJitter] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images float [n, 3, INPUT_SIZE, INPUT_SIZE], shape ids [n], colour ids [n])``."""
    samples = list(generate(n, seed, RENDER_SIZE, jitter))
    images = prepare_images(np.stack([s.image for s in samples]))
    shapes = torch.tensor([SHAPES.index(s.shape) for s in samples])
    colors = torch.tensor([COLOR_NAMES.index(s.color) for s in samples])
    return images, shapes, colors


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random scale (0.7-1.3), shift (+-12%), flip, blur and noise of ``images [N, 3, H, W]``."""
    n = images.shape[0]
    scale = torch.empty(n).uniform_(0.7, 1.3, generator=generator)
    shift = torch.empty(n, 2).uniform_(-0.12, 0.12, generator=generator)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = flip / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    blur = torch.rand(n, generator=generator) < 0.3
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25])
        k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
        blurred = F.conv2d(F.pad(out[blur], (1, 1, 1, 1), mode="replicate"), k2, groups=3)
        out[blur] = blurred
    noise = torch.randn(out.shape, generator=generator) * 0.02
    return (out + noise).clamp(0.0, 1.0)


@torch.no_grad()
def accuracy(
    model: ShapeColorClassifier, images: torch.Tensor, shapes: torch.Tensor, colors: torch.Tensor
) -> tuple[float, float]:
    """``(shape accuracy, colour accuracy)`` of ``model`` (eval mode) on a prepared set."""
    model.eval()
    s, c = model(images)
    return (
        float((s.argmax(-1) == shapes).float().mean()),
        float((c.argmax(-1) == colors).float().mean()),
    )


def train(
    n: int,
    seed: int,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    log: bool = True,
    jitter: Optional[AlbedoJitter] = AlbedoJitter(),
) -> tuple[ShapeColorClassifier, dict[str, float]]:
    """Train a fresh classifier on albedos varied by ``jitter`` (``None``: exact colours); returns
    it (eval mode) and held-out accuracies (``jittered_*`` on the held-out set with ``jitter``)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = time.time()
    images, shapes, colors = render_set(n, seed, jitter)
    n_test = max(n // 10, 96)
    test_images, test_shapes, test_colors = render_set(n_test, seed + HELD_OUT_SEED_OFFSET)
    jittered_test = (
        render_set(n_test, seed + HELD_OUT_SEED_OFFSET, jitter) if jitter is not None else None
    )
    if log:
        print(f"rendered {n} + {test_images.shape[0]} images in {time.time() - start:.1f}s")
    model = ShapeColorClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(n / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x = augment(images[idx], generator)
            s, c = model(x)
            loss = F.cross_entropy(s, shapes[idx]) + F.cross_entropy(c, colors[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        if log:
            shape_acc, color_acc = accuracy(model, test_images, test_shapes, test_colors)
            print(
                f"epoch {epoch + 1}/{epochs} loss {total / steps_per_epoch:.3f} held-out shape "
                f"{shape_acc:.3f} colour {color_acc:.3f} ({time.time() - start:.0f}s)"
            )
    shape_acc, color_acc = accuracy(model, test_images, test_shapes, test_colors)
    metrics = {"shape_accuracy": shape_acc, "color_accuracy": color_acc}
    if jittered_test is not None:
        shape_acc, color_acc = accuracy(model, *jittered_test)
        metrics.update(jittered_shape_accuracy=shape_acc, jittered_color_accuracy=color_acc)
    return model, metrics


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``studio primitives train-classifier``: parse ``argv``, train and save; returns the exit
    code."""
    parser = argparse.ArgumentParser(
        prog="studio primitives train-classifier",
        description="Train the primitives shape-and-colour classifier on CPU.",
    )
    parser.add_argument("--out", type=Path, default=default_weights_path(), help="weights file")
    parser.add_argument("--n", type=int, default=4800, help="training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--no-albedo-jitter",
        action="store_true",
        help="train on the exact colours (the classifier shipped before 2026-12-03)",
    )
    args = parser.parse_args(argv)
    jitter = None if args.no_albedo_jitter else AlbedoJitter()
    model, metrics = train(args.n, args.seed, args.epochs, jitter=jitter)
    save_classifier(model, args.out)
    held_out = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    print(f"held-out (seed {args.seed + HELD_OUT_SEED_OFFSET}): {held_out}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
