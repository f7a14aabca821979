"""Draw the loss curves of primitives training runs (``loss.csv`` files) into one PNG, log scale.

usage: python tools/plot_loss.py OUT.png LABEL=loss.csv [LABEL=loss.csv ...]
Each phase of each file (``vae``, ``unet``) is one curve; no plotting library needed (Pillow).
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 640, 320, 48
COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def read_curves(label: str, path: Path) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            curves.setdefault(f"{label} {row['phase']}", []).append(
                (int(row["step"]), float(row["loss"]))
            )
    return curves


def main(argv: list[str]) -> int:
    out, specs = Path(argv[0]), argv[1:]
    curves: dict[str, list[tuple[int, float]]] = {}
    for spec in specs:
        label, _, path = spec.partition("=")
        curves.update(read_curves(label, Path(path)))
    max_step = max(s for points in curves.values() for s, _ in points) or 1
    values = [v for points in curves.values() for _, v in points if v > 0]
    low, high = math.log10(min(values)), math.log10(max(values))
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    box = (MARGIN, 10, WIDTH - 10, HEIGHT - MARGIN)
    draw.rectangle(box, outline="black")

    def xy(step: int, value: float) -> tuple[float, float]:
        x = box[0] + (box[2] - box[0]) * step / max_step
        y = box[3] - (box[3] - box[1]) * (math.log10(value) - low) / max(high - low, 1e-9)
        return x, y

    for decade in range(math.floor(low), math.ceil(high) + 1):
        if low <= decade <= high:
            _, y = xy(0, 10.0**decade)
            draw.line((box[0], y, box[2], y), fill="#dddddd")
            draw.text((4, y - 6), f"1e{decade}", fill="black")
    draw.text((box[0], HEIGHT - MARGIN + 6), "0", fill="black")
    draw.text((box[2] - 40, HEIGHT - MARGIN + 6), f"{max_step} steps", fill="black")
    for index, (name, points) in enumerate(sorted(curves.items())):
        colour = COLOURS[index % len(COLOURS)]
        draw.line([xy(s, v) for s, v in points if v > 0], fill=colour, width=2)
        draw.text((box[0] + 8 + 150 * index, HEIGHT - 20), name, fill=colour)
    image.save(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
