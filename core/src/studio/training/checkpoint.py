"""Checkpoints: written atomically, readable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no pickled classes):

``format``, ``version``, ``global_step``, ``state_dict`` (system parameters and buffers),
``optimizer``, ``scheduler``, ``scaler``, ``rng`` and ``data`` (the data module's training-stream
state; one entry per rank each), ``world_size``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.errors import RunDirError, one_line

FORMAT = "studio-checkpoint"
VERSION = 1


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename over it.

    Whatever happens during ``write`` (exception, kill), ``path`` either keeps its previous content
    or holds the complete new one; a failed attempt leaves no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format markers) atomically to ``path``."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write(path, lambda handle: torch.save(data, handle))


def checkpoint_problem(exc: BaseException) -> str:
    """What went wrong reading a checkpoint, without torch's advice to load untrusted pickles."""
    import zipfile

    text = str(exc)
    if "Unsupported global" in text or "This file can still be loaded" in text:
        return (
            "it holds Python objects that a studio checkpoint never contains (a file from "
            "elsewhere, or a tampered one), so it was refused"
        )
    if isinstance(exc, (zipfile.BadZipFile, EOFError)) or "weights_only" in text or "zip" in text:
        return "the file is truncated, damaged or not a torch checkpoint"
    return f"{type(exc).__name__}: {one_line(text, 160)}"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a studio checkpoint safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"No checkpoint at {path}.")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise RunDirError(
            f"{path} could not be read as a studio checkpoint: {checkpoint_problem(exc)}. "
            "Studio loads checkpoints as plain tensors and values only, never as arbitrary "
            "objects. Use another checkpoint of the run (`studio resume` picks the newest "
            "readable one when this one is deleted) or the file written by `studio run`."
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RunDirError(f"{path} is not a studio checkpoint (no studio format marker).")
    return data


def load_module_weights(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The entries of a checkpoint's ``state_dict`` under ``prefix.`` with the prefix removed.

    ``path`` is a checkpoint file or a run directory (its newest checkpoint)."""
    from studio.rundir import find_checkpoint

    path, _run = find_checkpoint(path, "weights")
    state = load_checkpoint(path)["state_dict"]
    if not prefix:
        return dict(state)
    head = prefix + "."
    picked = {k[len(head) :]: v for k, v in state.items() if k.startswith(head)}
    if not picked:
        raise RunDirError(f"{path} holds no weights under the prefix {prefix!r}.")
    return picked


def select_weights(
    own: dict[str, torch.Tensor],
    saved: dict[str, torch.Tensor],
    ignore: list[str],
    key: str,
    source: str,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The entries of ``saved`` to load into a module whose state is ``own``.

    Entries under an ``ignore`` prefix (a module name such as ``background``) are dropped, in
    every particle too (``particles.<k>.background``, :mod:`studio.systems.lift3d`). Returns
    ``(entries to load, own keys the checkpoint does not set)``. An entry the module does not have
    or whose shape differs is a :class:`RunDirError` naming the module, the entry and both shapes
    (``key`` is the setting, ``source`` the checkpoint)."""

    def ignored(name: str) -> bool:
        if name.startswith("particles."):  # particles.<k>.<part>...: the part's own name
            name = name.split(".", 2)[2] if name.count(".") >= 2 else name
        return any(name == p or name.startswith(p + ".") for p in ignore)

    def particles(state: dict[str, torch.Tensor]) -> set[str]:
        return {k.split(".")[1] for k in state if k.startswith("particles.")}

    if particles(own) - particles(saved):
        have, want = len(particles(saved)) + 1, len(particles(own)) + 1
        raise RunDirError(
            f"{key}={source}: the checkpoint holds {have} particle(s), this system trains "
            f"{want}; every particle loads its own weights. Give a run with {want} particles, "
            f"or set system.num_particles={have}."
        )
    picked = {k: v for k, v in saved.items() if not ignored(k)}
    unexpected = sorted(k for k in picked if k not in own)
    if unexpected:
        modules = sorted({k.split(".", 1)[0] for k in unexpected})
        raise RunDirError(
            f"{key}={source}: the checkpoint holds weights this system does not have "
            f"({', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}). Skip those "
            f"modules with system.weights_ignore_modules=[{', '.join(modules)}]."
        )
    for name, value in picked.items():
        if tuple(value.shape) != tuple(own[name].shape):
            module = name.split(".", 1)[0]
            raise RunDirError(
                f"{key}={source}: module {module!r} differs: {name} has shape "
                f"{tuple(value.shape)} in the checkpoint but {tuple(own[name].shape)} here. "
                f"Configure {module} as the source run did, or skip it with "
                f"system.weights_ignore_modules=[{module}]."
            )
    missing = sorted(k for k in own if k not in picked and not ignored(k))
    return picked, missing


# -- random number generator states ------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """This process's Python, NumPy and torch RNG states as weights-only-loadable data."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": numpy_state["key"].numpy().astype(np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def config_differences(source: Any, here: Any, prefix: str) -> list[str]:
    """``"prefix.key: A in the source run, B here"`` for every leaf of two parsed config mappings
    that differs (a key only one side has counts, as ``None`` on the other), sorted by key."""
    if isinstance(source, dict) and isinstance(here, dict):
        lines: list[str] = []
        for key in sorted(set(source) | set(here), key=str):
            lines += config_differences(source.get(key), here.get(key), f"{prefix}.{key}")
        return lines
    if source == here:
        return []
    return [f"{prefix}: {source!r} in the source run, {here!r} here"]


def loaded_module_differences(
    source_system: dict[str, Any], system: dict[str, Any], modules: list[str], path: str
) -> list[str]:
    """How the config of each loaded module (``geometry``, ...: its ``<module>_type`` and its
    ``<module>`` mapping) differs between the run ``system.weights`` came from and this one
    (entries the source run's config does not record are not compared); ``path`` is the
    system's config path (``system``)."""
    lines: list[str] = []
    for module in modules:
        for name in (f"{module}_type", module):
            if name in source_system:
                lines += config_differences(
                    source_system.get(name), system.get(name), f"{path}.{name}"
                )
    return lines
