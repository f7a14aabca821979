"""The shipped weights: the classifier and the two primitives pipelines (``sd/``, ``if/``).

:func:`sd_folder` and :func:`if_folder` are what ``primitives-sd`` / ``primitives-if`` resolve to
(registered through ``studio_register_models``): folders saved with ``save_pretrained`` by
:mod:`studio_primitives.training.train` (``studio primitives train``), loaded unchanged by the
``stable-diffusion`` / ``deep-floyd`` guidance and prompt processor.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def pipeline_folder(form: str) -> Path:
    """The shipped pipeline of ``form`` (``"sd"`` or ``"if"``); raises ``FileNotFoundError`` with
    the command that recreates it when the installation lacks it."""
    folder = FOLDER / form
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{folder} holds no saved pipeline; recreate it with `studio primitives train "
            f"--form {form} --out {folder}` (see docs/primitives.md)"
        )
    return folder


def sd_folder() -> Path:
    """The Stable-Diffusion-form pipeline (``primitives-sd``)."""
    return pipeline_folder("sd")


def if_folder() -> Path:
    """The DeepFloyd-IF-form pipeline (``primitives-if``)."""
    return pipeline_folder("if")
