"""Load ``nvdiffrast.torch`` with its CUDA plugin on PyTorch versions its own loader fails on.

nvdiffrast compiles its plugin with ``torch.utils.cpp_extension.load`` and then imports it by name
(``importlib.import_module("nvdiffrast_plugin_...")``). Recent PyTorch loads a compiled extension
from its file without putting it on ``sys.path``/``sys.modules``, so that import fails with
``No module named nvdiffrast_plugin_...`` although the build succeeded.

:func:`load_nvdiffrast` first lets the package load its plugin itself. Only when that fails does it
take the compiled module from the package's own build directory (when the build got that far) or
build it from the package's C++/CUDA sources into ``<cache>/torch_extensions/`` (``<cache>`` is
``$STUDIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/studio``, else ``~/.cache/studio``; the CUDA
architectures are PyTorch's usual ``TORCH_CUDA_ARCH_LIST``), and installs the module where
``nvdiffrast.torch.ops._get_plugin`` caches its plugin. Only the CUDA rasterizer context is
supported; the OpenGL plugin is never built.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from studio.errors import StudioError
from studio.paths import cache_dir

log = logging.getLogger(__name__)

#: The C++ flags nvdiffrast compiles its torch plugin with.
CFLAGS = ["-DNVDR_TORCH"]
CUDA_CFLAGS = ["-DNVDR_TORCH", "-lineinfo"]

Builder = Callable[[list[Path], str, Path], ModuleType]


def sanitize_name(name: str) -> str:
    """A valid Python identifier (nvdiffrast's own rule: non-word characters become ``_``)."""
    return re.sub(r"\W|^(?=\d)", "_", name)


def plugin_name(nvdiffrast_version: str, torch_version: str) -> str:
    """The module name nvdiffrast gives its CUDA plugin (reusing it reuses its build)."""
    return sanitize_name(f"nvdiffrast_plugin_{nvdiffrast_version}_torch{torch_version}")


def _is_gl_only(path: Path) -> bool:
    return path.stem == "glutil" or path.stem.endswith("_gl")


def plugin_sources(package_dir: Path) -> list[Path]:
    """The sources of the CUDA-context torch plugin inside the ``nvdiffrast`` package folder.

    Every ``.cpp``/``.cu`` file under ``common/`` and every ``torch/torch_*.cpp``, except the
    OpenGL-only ones (``glutil``, ``*_gl``). Raises :class:`StudioError` when the folder does not
    look like an nvdiffrast source distribution.
    """
    common, torch_dir = package_dir / "common", package_dir / "torch"
    sources = sorted(
        p for p in common.rglob("*") if p.suffix in (".cpp", ".cu") and not _is_gl_only(p)
    )
    sources += sorted(p for p in torch_dir.glob("torch_*.cpp") if not _is_gl_only(p))
    if not (torch_dir / "torch_bindings.cpp").is_file() or not any(
        p.suffix == ".cu" for p in sources
    ):
        raise StudioError(
            f"No nvdiffrast C++/CUDA sources found under {package_dir} (expected "
            f"torch/torch_bindings.cpp and common/*.cu). Install a source distribution of "
            f"nvdiffrast (pip install diffrp-nvdiffrast) or use the rasterizer backend 'torch'."
        )
    return sources


def build_directory(name: str) -> Path:
    """Where our build of plugin ``name`` goes: one folder per ``TORCH_CUDA_ARCH_LIST``."""
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip() or "native"
    return cache_dir() / "torch_extensions" / f"{name}_arch_{re.sub(r'[^0-9A-Za-z]', '_', arch)}"


def build_plugin(sources: list[Path], name: str, directory: Path) -> ModuleType:
    """Compile (or reuse an up-to-date build of) the plugin and return the loaded module."""
    from torch.utils import cpp_extension

    directory.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=name,
        sources=[str(p) for p in sources],
        extra_cflags=CFLAGS,
        extra_cuda_cflags=CUDA_CFLAGS,
        build_directory=str(directory),
        with_cuda=True,
        verbose=False,
    )


def package_build(name: str) -> ModuleType | None:
    """The plugin module the package's own loader compiled (PyTorch's default build folder)."""
    from torch.utils import cpp_extension

    directory = Path(cpp_extension._get_build_directory(name, False))
    library = directory / f"{name}{cpp_extension.LIB_EXT}"
    if not library.is_file():
        return None
    return cpp_extension._import_module_from_library(name, str(directory), True)


def install_plugin(ops: ModuleType, module: Any) -> None:
    """Make ``module`` the CUDA plugin that ``ops._get_plugin()`` returns from now on."""
    cache = getattr(ops, "_cached_plugin", None)
    if not isinstance(cache, dict) or not callable(getattr(ops, "_get_plugin", None)):
        raise StudioError(
            f"This nvdiffrast ({getattr(ops, '__file__', ops)}) has no _get_plugin/_cached_plugin "
            f"plugin cache, so studio cannot hand it a compiled plugin. Install diffrp-nvdiffrast "
            f"0.3.x or use the rasterizer backend 'torch'."
        )
    cache[False] = module


def load_nvdiffrast(builder: Builder = build_plugin) -> ModuleType:
    """``nvdiffrast.torch`` with a working CUDA plugin (see the module docstring).

    ``builder(sources, name, directory)`` compiles and loads the plugin (injectable for tests).
    Raises :class:`StudioError` when nvdiffrast is missing or its plugin cannot be built.
    """
    try:
        dr = importlib.import_module("nvdiffrast.torch")
        ops = importlib.import_module("nvdiffrast.torch.ops")
    except ImportError as error:
        raise StudioError(
            f"nvdiffrast is not importable ({error}). Install it (pip install diffrp-nvdiffrast) "
            f"or set the rasterizer backend to 'torch'."
        ) from error
    try:
        ops._get_plugin()
        return dr
    except (ImportError, RuntimeError, OSError) as error:
        first_error = error
    import torch

    nvdiffrast = importlib.import_module("nvdiffrast")
    name = plugin_name(nvdiffrast.__version__, torch.__version__)
    log.info("nvdiffrast's own plugin loader failed (%s); loading %s ourselves", first_error, name)
    started = time.perf_counter()
    try:
        module = package_build(name)
        if module is None:
            sources = plugin_sources(Path(nvdiffrast.__file__).parent)
            module = builder(sources, name, build_directory(name))
    except StudioError:
        raise
    except Exception as error:  # compiler failures come in many types
        raise StudioError(
            f"Building nvdiffrast's CUDA plugin failed ({type(error).__name__}: {error}); its "
            f"own loader had said: {first_error}. Check that nvcc matches torch.version.cuda "
            f"and TORCH_CUDA_ARCH_LIST, or use the rasterizer backend 'torch'."
        ) from error
    install_plugin(ops, module)
    log.info("nvdiffrast plugin ready in %.1f s", time.perf_counter() - started)
    return dr
