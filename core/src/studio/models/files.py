"""Which files of a hub repository a download fetches.

A diffusers repository typically holds every weight file several times over: ``.bin`` next to
``.safetensors``, fp16 and non-EMA variants, single-file checkpoints at the top level. Fetching
all of it costs tens of gigabytes that no loader reads. :func:`select_files` keeps what
``from_pretrained`` can use and drops the rest, by these rules (applied in order):

1. formats torch cannot load (Flax ``.msgpack``, TensorFlow ``.h5``, ONNX, Rust ``.ot``, GGUF,
   Core ML packages, ...) are dropped;
2. in a diffusers pipeline (the repository has a top-level ``model_index.json``), top-level weight
   files are dropped: they are single-file checkpoints, the pipeline loads its component folders;
3. with ``subfolders``, only files under those folders plus the top-level ``*.json`` files stay;
4. variants in :data:`DROPPED_VARIANTS` (``non_ema``, ``ema_only``) are dropped;
5. a ``.bin`` weight is dropped when its folder holds a ``.safetensors`` weight of the same
   variant (loaders prefer safetensors).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from posixpath import dirname, splitext

UNLOADABLE_SUFFIXES = (
    ".msgpack",
    ".h5",
    ".onnx",
    ".onnx_data",
    ".ot",
    ".gguf",
    ".tflite",
    ".pb",
    ".mlmodel",
)
UNLOADABLE_FOLDER_MARKERS = (".mlpackage/", ".mlmodelc/")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
DROPPED_VARIANTS = frozenset({"non_ema", "ema_only"})
_SHARD = re.compile(r"-\d+-of-\d+$")


def weight_variant(path: str) -> str:
    """The variant tag of a ``.bin``/``.safetensors`` weight file (``""`` when it has none).

    ``unet/diffusion_pytorch_model.fp16.safetensors`` -> ``fp16``;
    ``model.fp16-00001-of-00002.safetensors`` -> ``fp16``; ``model-00001-of-00002.bin`` -> ``""``.
    """
    stem, _ = splitext(path.rsplit("/", 1)[-1])
    parts = stem.split(".")
    if len(parts) < 2:
        return ""
    return _SHARD.sub("", parts[-1])


def _is_weight(path: str) -> bool:
    return path.endswith(WEIGHT_SUFFIXES)


def _unloadable(path: str) -> bool:
    return path.endswith(UNLOADABLE_SUFFIXES) or any(m in path for m in UNLOADABLE_FOLDER_MARKERS)


def _in_subfolders(path: str, subfolders: Sequence[str]) -> bool:
    if "/" not in path:
        return path.endswith(".json")
    return any(path.startswith(folder.rstrip("/") + "/") for folder in subfolders)


def select_files(files: Iterable[str], subfolders: Sequence[str] | None = None) -> list[str]:
    """The repository paths (``/``-separated) worth downloading, sorted; see the module rules."""
    paths = [p for p in files if not _unloadable(p)]
    if "model_index.json" in paths:
        paths = [p for p in paths if "/" in p or not _is_weight(p)]
    if subfolders is not None:
        paths = [p for p in paths if _in_subfolders(p, subfolders)]
    paths = [p for p in paths if not _is_weight(p) or weight_variant(p) not in DROPPED_VARIANTS]
    safetensors = {(dirname(p), weight_variant(p)) for p in paths if p.endswith(".safetensors")}
    paths = [
        p
        for p in paths
        if not (p.endswith(".bin") and (dirname(p), weight_variant(p)) in safetensors)
    ]
    return sorted(paths)
