"""pytest helpers for studio and its plugins (auto-loaded through the ``pytest11`` entry point).

Fixture ``studio_plugin``: register an in-process plugin for one test::

    def test_my_geometry(studio_plugin):
        class Plugin:
            @hookimpl
            def studio_register_geometries(self, register):
                register("blob", "my_tests.blob:Blob")
        studio_plugin(Plugin(), name="blob-plugin")
        assert "blob" in get_registry().names("geometry")

Tests marked ``@pytest.mark.gpu`` are skipped where torch sees no CUDA device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from studio import registry


@pytest.fixture
def studio_plugin() -> Iterator[Callable[..., None]]:
    added: list[str] = []

    def add(obj: object, name: str = "test-plugin", distribution: str = "(test)") -> None:
        registry.add_plugin(obj, name, distribution)
        added.append(name)

    yield add
    for name in added:
        registry.remove_plugin(name)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (run on the GPU machine)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; run on the GPU machine")
    for item in gpu_items:
        item.add_marker(skip)
