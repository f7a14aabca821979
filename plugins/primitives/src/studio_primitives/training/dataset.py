"""The primitives data set on disk: PNGs and ``captions.jsonl`` (training tooling).

``studio primitives data --out DIR --n N --seed S --size 64`` (or
``python -m studio_primitives.training.dataset ...``) writes the samples of
:func:`studio_primitives.data.generate`; ``studio primitives train --data DIR`` reads them back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from studio.api import ConfigError
from studio_primitives.data import generate


def write_dataset(folder: str | Path, n: int, seed: int, size: int = 64) -> Path:
    """Write ``n`` PNGs (``00000.png``, ...) and ``captions.jsonl`` (one JSON object per image, in
    order: ``file`` plus :meth:`~studio_primitives.data.Sample.metadata`) into ``folder``; returns
    ``folder``.

    The files are written into a staging folder next to ``folder`` that is renamed at the end, so
    ``folder`` is either complete or absent. An existing ``folder`` is a :class:`ConfigError`.
    """
    folder = Path(folder)
    if folder.exists():
        raise ConfigError(f"{folder} already exists; remove it or choose another --out.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with open(staging / "captions.jsonl", "w", encoding="utf-8") as captions:
            for index, sample in enumerate(generate(n, seed, size)):
                name = f"{index:05d}.png"
                Image.fromarray(sample.image).save(staging / name)
                captions.write(json.dumps({"file": name, **sample.metadata()}) + "\n")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_dataset(folder: str | Path) -> tuple[np.ndarray, list[str]]:
    """Images ``uint8 [N, size, size, 3]`` and captions of a folder :func:`write_dataset` wrote,
    in its order. Raises :class:`ConfigError` for a folder that is not such a data set."""
    folder = Path(folder)
    index = folder / "captions.jsonl"
    if not index.is_file():
        raise ConfigError(
            f"{folder} is not a primitives data set (it has no captions.jsonl); write one with "
            "`studio primitives data --out DIR`."
        )
    records = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line]
    if not records:
        raise ConfigError(f"{index} lists no images; the data set is empty.")
    images = []
    for record in records:
        path = folder / record["file"]
        if not path.is_file():
            raise ConfigError(f"{index} lists {record['file']}, which is missing from {folder}.")
        images.append(np.asarray(Image.open(path).convert("RGB")))
    sizes = {image.shape for image in images}
    if len(sizes) != 1:
        raise ConfigError(f"{folder} mixes image sizes {sorted(sizes)}; regenerate it.")
    return np.stack(images), [record["caption"] for record in records]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``studio primitives data``: parse ``argv`` and write the data set; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="studio primitives data",
        description="Render the primitives data set (PNGs + captions.jsonl).",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to create")
    parser.add_argument("--n", type=int, default=480, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    args = parser.parse_args(argv)
    try:
        folder = write_dataset(args.out, args.n, args.seed, args.size)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.n} images and captions.jsonl to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
