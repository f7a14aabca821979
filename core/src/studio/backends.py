"""Optional fast backends and the always-available fallbacks.

Each *concern* (hash-grid encoding, ray marching, rasterization, ...) has candidate backends in
order of preference. ``auto`` picks the first one that is importable (and has CUDA when it needs
it); a config can force one. Availability is checked with ``importlib.util.find_spec`` so asking
does not import the backend.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from studio.errors import ConfigError


@dataclass(frozen=True)
class Backend:
    name: str
    module: str | None  # None: pure PyTorch, always importable
    needs_cuda: bool = False


CONCERNS: dict[str, tuple[Backend, ...]] = {
    # triton: studio's own hash grid with fused Triton kernels on CUDA (PyTorch ops elsewhere).
    "hash-grid": (
        Backend("tinycudann", "tinycudann", True),
        Backend("triton", "triton", True),
        Backend("torch", None),
    ),
    "ray-marching": (Backend("nerfacc", "nerfacc", True), Backend("torch", None)),
    "rasterizer": (Backend("nvdiffrast", "nvdiffrast", True), Backend("torch", None)),
    "marching-cubes": (Backend("pymcubes", "mcubes"), Backend("torch", None)),
}

#: Optional libraries reported by ``studio doctor`` (import name -> what uses it).
OPTIONAL_LIBRARIES: dict[str, str] = {
    "diffusers": "Stable Diffusion / DeepFloyd IF guidance",
    "transformers": "text encoders",
    "bitsandbytes": "8-bit T5 for DeepFloyd IF",
    "tomesd": "token merging for SD guidance",
    "xatlas": "UV unwrapping for textured exports",
    "trimesh": "mesh IO and clean-up",
    "imageio_ffmpeg": "mp4 videos",
    "tensorboard": "TensorBoard logging (trainer.tensorboard=true)",
}


def importable(module: str | None) -> bool:
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def usable(backend: Backend, cuda: bool) -> bool:
    return importable(backend.module) and (cuda or not backend.needs_cuda)


def choose(concern: str, requested: str = "auto", cuda: bool = False) -> str:
    """The backend name to use for ``concern`` (``requested`` is ``auto`` or a backend name)."""
    candidates = CONCERNS[concern]
    if requested == "auto":
        return next(b.name for b in candidates if usable(b, cuda))
    for backend in candidates:
        if backend.name == requested:
            if not usable(backend, cuda):
                reason = "needs CUDA" if importable(backend.module) else "is not installed"
                raise ConfigError(
                    f"The {concern} backend {requested!r} was requested but {reason}. Use "
                    f"'auto' (falls back to PyTorch) or install it; `studio doctor` shows what works."
                )
            return backend.name
    names = ", ".join(b.name for b in candidates)
    raise ConfigError(f"Unknown {concern} backend {requested!r}; choose auto or one of {names}.")
