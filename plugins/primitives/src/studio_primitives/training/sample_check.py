"""Sample a saved primitives pipeline and score the samples with a classifier.

``studio primitives sample-check PIPELINE --form sd|if --out DIR [--classifier WEIGHTS]`` (or
``python -m studio_primitives.training.sample_check ...``)

Draws the training script's sample grid (DDIM, 30 steps, CFG 5, 4 samples of every
``"a {colour} {shape}, front view"`` prompt, seed ``--seed``) from the pipeline as saved and writes
``samples.png`` and ``accuracy.json`` into ``DIR``, exactly as
:mod:`studio_primitives.training.train` does at the end of a run. Use it to score shipped weights
again after a classifier change, or weights trained elsewhere, without training.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import attrs
import torch

from studio.api import ConfigError
from studio_primitives.classifier import load_classifier
from studio_primitives.training.train import (
    FORMS,
    TrainConfig,
    default_prompts,
    load_pipeline,
    sample_accuracy,
    sample_images,
    save_grid,
)

#: The training script's sampling defaults (attrs field descriptors).
DEFAULTS = attrs.fields(TrainConfig)


def check(
    pipeline: Path,
    form: str,
    out: Path,
    classifier: Optional[Path] = None,
    seed: int = 0,
    device: str = "cpu",
    **sampling: Any,
) -> dict[str, Any]:
    """Sample ``pipeline`` and write ``out/samples.png`` and ``out/accuracy.json``; returns the
    accuracy record (``classifier``: weights file, default the shipped ones). ``sampling``
    overrides :class:`TrainConfig`'s sampling fields (``sample_prompts``, ``sample_steps``, ...)."""
    pipe = load_pipeline(form, Path(pipeline))
    target = torch.device(device)
    pipe.to(target)
    cfg = TrainConfig(form=form, out=Path(out) / "unused", device=device, seed=seed, **sampling)
    prompts = cfg.sample_prompts if cfg.sample_prompts is not None else default_prompts()
    images = sample_images(pipe, cfg, prompts, target, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_grid(images, cfg.samples_per_prompt, out / "samples.png")
    model = load_classifier(classifier) if classifier is not None else None
    accuracy = sample_accuracy(images, prompts, cfg.samples_per_prompt, model)
    accuracy["classifier"] = str(classifier) if classifier is not None else "shipped"
    (out / "accuracy.json").write_text(json.dumps(accuracy, indent=1), encoding="utf-8")
    return accuracy


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``studio primitives sample-check``: parse ``argv``, sample and score; returns the exit
    code."""
    parser = argparse.ArgumentParser(
        prog="studio primitives sample-check",
        description="Sample a saved primitives pipeline and score the samples with a classifier.",
    )
    parser.add_argument("pipeline", type=Path, help="saved pipeline folder (has unet/)")
    parser.add_argument("--form", required=True, choices=FORMS)
    parser.add_argument("--out", required=True, type=Path, help="folder for the grid and scores")
    parser.add_argument("--classifier", type=Path, default=None, help="weights (default: shipped)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance-scale", type=float, default=DEFAULTS.guidance_scale.default)
    parser.add_argument("--sample-steps", type=int, default=DEFAULTS.sample_steps.default)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        accuracy = check(
            args.pipeline, args.form, args.out, args.classifier, args.seed, args.device
        )
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"classifier accuracy of the samples: {accuracy['accuracy']:.3f} (wrote {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
