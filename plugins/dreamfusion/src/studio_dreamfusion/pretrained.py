"""Where pretrained diffusion/text models are read from (a local folder or the hub cache), and how.

:func:`resolve_pretrained` is :func:`studio.models.hub.resolve_model`: a local folder is used as
is; a hub id becomes its cached snapshot (or is downloaded when online); otherwise a
``ModelNotAvailableError`` names the model, where it looked and ``studio models pull NAME``.
The other helpers pick loader keywords that fit the installed diffusers/transformers and the
files actually present.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import torch

from studio.api import resolve_model, weight_variant

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def resolve_pretrained(
    name_or_path: str, *, subfolders: Optional[Sequence[str]], config_key: str
) -> Path:
    """The local folder holding ``name_or_path`` with all of ``subfolders``; ``config_key`` (the
    setting the value came from) is named in the error when the model is unavailable."""
    return resolve_model(name_or_path, subfolders=subfolders, config_key=config_key)


def transformers_dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``{"dtype": dtype}`` for transformers >= 4.56 (which deprecated ``torch_dtype``), else the
    old keyword."""
    import transformers
    from packaging.version import Version

    new = Version(transformers.__version__) >= Version("4.56")
    return {"dtype": dtype} if new else {"torch_dtype": dtype}


def diffusers_dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``{"dtype": dtype}`` for diffusers >= 0.42 (which deprecated ``torch_dtype``), else the
    old keyword."""
    import diffusers
    from packaging.version import Version

    new = Version(diffusers.__version__) >= Version("0.42")
    return {"dtype": dtype} if new else {"torch_dtype": dtype}


def weight_variants(folder: Path) -> set[str]:
    """Variant tags of the weight files under ``folder`` (``""`` for untagged weights)."""
    if not folder.is_dir():
        return set()
    return {
        weight_variant(p.name)
        for p in folder.rglob("*")
        if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)
    }


def pick_variant(folder: Path, dtype: torch.dtype) -> Optional[str]:
    """``"fp16"`` when ``folder`` has fp16 weights and either fp16 is wanted or there are no
    untagged weights to load instead; ``None`` (the untagged weights) otherwise."""
    variants = weight_variants(folder)
    if "fp16" not in variants:
        return None
    return "fp16" if dtype == torch.float16 or "" not in variants else None
