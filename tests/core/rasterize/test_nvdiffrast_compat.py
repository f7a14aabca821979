"""The pure-Python parts of the nvdiffrast plugin loader, with a fake nvdiffrast package."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from studio.errors import StudioError
from studio.rasterize import nvdiffrast_compat as compat

#: The CUDA-context plugin sources of nvdiffrast 0.3.x (its own list in torch/ops.py).
CUDA_SOURCES = [
    "common/antialias.cu",
    "common/common.cpp",
    "common/cudaraster/impl/Buffer.cpp",
    "common/cudaraster/impl/CudaRaster.cpp",
    "common/cudaraster/impl/RasterImpl.cpp",
    "common/cudaraster/impl/RasterImpl.cu",
    "common/interpolate.cu",
    "common/rasterize.cu",
    "common/texture.cpp",
    "common/texture.cu",
    "torch/torch_antialias.cpp",
    "torch/torch_bindings.cpp",
    "torch/torch_interpolate.cpp",
    "torch/torch_rasterize.cpp",
    "torch/torch_texture.cpp",
]
OTHER_FILES = [
    "common/glutil.cpp",
    "common/rasterize_gl.cpp",
    "common/antialias.h",
    "common/cudaraster/impl/BinRaster.inl",
    "torch/torch_bindings_gl.cpp",
    "torch/torch_rasterize_gl.cpp",
    "torch/torch_common.inl",
    "tensorflow/tf_all.cu",
]

OPS = """
_cached_plugin = {}
calls = []

def _get_plugin(gl=False):
    calls.append(gl)
    if _cached_plugin.get(gl) is not None:
        return _cached_plugin[gl]
    raise ModuleNotFoundError("No module named 'nvdiffrast_plugin_0_3_3_1_torch2_11_0'")

class RasterizeCudaContext:
    def __init__(self, device=None):
        self.cpp_wrapper = _get_plugin().RasterizeCRStateWrapper(0)
"""


def fake_package(root: Path, ops_source: str = OPS) -> Path:
    package = root / "nvdiffrast"
    for name in [*CUDA_SOURCES, *OTHER_FILES]:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("// source\n")
    (package / "__init__.py").write_text("__version__ = '0.3.3.1'\n")
    (package / "torch" / "__init__.py").write_text("from .ops import RasterizeCudaContext\n")
    (package / "torch" / "ops.py").write_text(ops_source)
    return package


@pytest.fixture
def fake_nvdiffrast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = fake_package(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m == "nvdiffrast" or m.startswith("nvdiffrast.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    # no leftover build of the package's own loader
    monkeypatch.setattr(compat, "package_build", lambda name: None)
    yield package
    for name in [m for m in sys.modules if m == "nvdiffrast" or m.startswith("nvdiffrast.")]:
        del sys.modules[name]


def test_plugin_sources_are_the_cuda_context_sources(tmp_path: Path) -> None:
    package = fake_package(tmp_path)
    found = [p.relative_to(package).as_posix() for p in compat.plugin_sources(package)]
    assert sorted(found) == sorted(CUDA_SOURCES)


def test_plugin_sources_missing_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "nvdiffrast" / "torch").mkdir(parents=True)
    with pytest.raises(StudioError, match="No nvdiffrast C\\+\\+/CUDA sources"):
        compat.plugin_sources(tmp_path / "nvdiffrast")


def test_plugin_name_and_build_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (
        compat.plugin_name("0.3.3.1", "2.11.0+cu130")
        == "nvdiffrast_plugin_0_3_3_1_torch2_11_0_cu130"
    )
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    assert compat.build_directory("p") == tmp_path / "torch_extensions" / "p_arch_9_0"
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    assert compat.build_directory("p").name == "p_arch_native"
    monkeypatch.delenv("STUDIO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compat.cache_dir() == tmp_path / "xdg" / "studio"


def test_build_plugin_calls_cpp_extension_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from torch.utils import cpp_extension

    seen = {}
    sentinel = types.ModuleType("built")
    monkeypatch.setattr(cpp_extension, "load", lambda **kw: seen.update(kw) or sentinel)
    sources = [tmp_path / "a.cu", tmp_path / "b.cpp"]
    assert compat.build_plugin(sources, "plug", tmp_path / "out") is sentinel
    assert seen["name"] == "plug" and seen["sources"] == [str(s) for s in sources]
    assert seen["build_directory"] == str(tmp_path / "out") and (tmp_path / "out").is_dir()
    assert "-DNVDR_TORCH" in seen["extra_cflags"] and "-DNVDR_TORCH" in seen["extra_cuda_cflags"]
    assert seen["with_cuda"] is True


def test_fallback_builds_and_installs_the_plugin(fake_nvdiffrast: Path, tmp_path: Path) -> None:
    plugin = types.SimpleNamespace(RasterizeCRStateWrapper=lambda index: ("state", index))
    built = []

    def builder(sources: list[Path], name: str, directory: Path) -> object:
        built.append((sources, name, directory))
        return plugin

    dr = compat.load_nvdiffrast(builder=builder)
    import nvdiffrast.torch.ops as ops

    assert dr is sys.modules["nvdiffrast.torch"]
    ((sources, name, directory),) = built
    assert sorted(p.relative_to(fake_nvdiffrast).as_posix() for p in sources) == sorted(
        CUDA_SOURCES
    )
    assert name.startswith("nvdiffrast_plugin_0_3_3_1_torch")
    assert directory.parent == tmp_path / "cache" / "torch_extensions"
    assert ops._get_plugin() is plugin  # installed where nvdiffrast looks first
    assert dr.RasterizeCudaContext().cpp_wrapper == ("state", 0)
    # loaded now: the package's own loader succeeds and nothing is built again
    assert compat.load_nvdiffrast(builder=builder) is dr and len(built) == 1


def test_package_loader_is_used_when_it_works(fake_nvdiffrast: Path) -> None:
    import nvdiffrast.torch.ops as ops

    ops._cached_plugin[False] = "theirs"

    def builder(*args: object) -> object:
        raise AssertionError("must not build")

    compat.load_nvdiffrast(builder=builder)
    assert ops._get_plugin() == "theirs" and ops.calls == [False, False]


def test_reuses_the_package_build(fake_nvdiffrast: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "package_build", lambda name: "already built")

    def builder(*args: object) -> object:
        raise AssertionError("must not build")

    compat.load_nvdiffrast(builder=builder)
    import nvdiffrast.torch.ops as ops

    assert ops._get_plugin() == "already built"


def test_build_failure_and_unknown_layout_are_clear_errors(
    fake_nvdiffrast: Path, tmp_path: Path
) -> None:
    def failing(*args: object) -> object:
        raise RuntimeError("Error building extension 'nvdiffrast_plugin'")

    with pytest.raises(
        StudioError, match=r"Building nvdiffrast's CUDA plugin failed.*No module named"
    ):
        compat.load_nvdiffrast(builder=failing)
    with pytest.raises(StudioError, match="_get_plugin/_cached_plugin"):
        compat.install_plugin(types.ModuleType("ops"), object())


def test_missing_nvdiffrast_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvdiffrast", None)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", None)
    with pytest.raises(StudioError, match="pip install diffrp-nvdiffrast"):
        compat.load_nvdiffrast()
