"""One-line field docs (attribute docstrings) and that every config class documents its fields."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Optional

import attrs
import pytest

from studio.config.docs import field_docs


@attrs.define(kw_only=True)
class Documented:
    radius: float = 1.0
    """Half the side of the bounding box.

    A second paragraph that is not part of the one-line doc."""
    levels: int = 16
    """Grid levels,
    written over two physical lines."""
    undocumented: bool = False
    # a comment is not a doc
    commented: Optional[str] = None
    tagged: int = attrs.field(default=3, metadata={"doc": "From the field's metadata."})


@attrs.define(kw_only=True)
class Derived(Documented):
    radius: float = 2.0
    """The derived class's own doc wins over its base's."""
    extra: str = ""
    """A field of the subclass only."""
    overridden: int = attrs.field(default=0, metadata={"doc": "Metadata wins."})
    """The docstring loses to the metadata."""


def test_attribute_docstrings_are_read_as_one_line() -> None:
    docs = field_docs(Documented)
    assert docs["radius"] == "Half the side of the bounding box."
    assert docs["levels"] == "Grid levels, written over two physical lines."
    assert "undocumented" not in docs
    assert "commented" not in docs
    assert docs["tagged"] == "From the field's metadata."


def test_inheritance_keeps_base_docs_and_subclasses_override() -> None:
    docs = field_docs(Derived)
    assert docs["levels"] == "Grid levels, written over two physical lines."
    assert docs["tagged"] == "From the field's metadata."
    assert docs["radius"] == "The derived class's own doc wins over its base's."
    assert docs["extra"] == "A field of the subclass only."
    assert docs["overridden"] == "Metadata wins."
    assert "undocumented" not in docs


# -- every config class of core and the DreamFusion plugin is documented ---------------------------

#: Packages whose config classes must document every field.
PACKAGES = ("studio", "studio_dreamfusion")
#: Modules left out: ``studio.specs`` documents its fields with ``#:`` comments, and a
#: ``__main__`` module runs the CLI when imported.
SKIPPED_MODULES = ("studio.specs",)
#: Optional GPU backends a module may fail to import without on a CPU-only machine.
OPTIONAL_BACKENDS = ("triton", "tinycudann", "nerfacc", "nvdiffrast")


def _modules(package_name: str) -> list[ModuleType]:
    package = importlib.import_module(package_name)
    names = [package_name] + [
        info.name for info in pkgutil.walk_packages(package.__path__, f"{package_name}.")
    ]
    modules = []
    for name in names:
        if name in SKIPPED_MODULES or name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            if (exc.name or "").split(".")[0] in OPTIONAL_BACKENDS:
                continue
            raise
    return modules


def is_config_class(cls: type) -> bool:
    """The rule: an attrs class named ``Config`` or ``...Config`` (a component's nested
    ``Config``, ``ExperimentConfig``, ``HashGridConfig``, ...)."""
    return attrs.has(cls) and cls.__name__.endswith("Config")


def config_classes(package_name: str) -> dict[str, type]:
    """``module:qualified name -> class`` of every config class defined in the package's modules
    (module level and nested in classes, e.g. ``ImplicitVolume.Config``)."""
    found: dict[str, type] = {}
    seen: set[type] = set()
    for module in _modules(package_name):
        pending = [cls for cls in vars(module).values() if inspect.isclass(cls)]
        while pending:
            cls = pending.pop()
            if cls in seen or cls.__module__ != module.__name__:
                continue  # done, or imported from elsewhere: its own module lists it
            seen.add(cls)
            pending.extend(v for v in vars(cls).values() if inspect.isclass(v))
            if is_config_class(cls):
                found[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return found


@pytest.mark.parametrize("package_name", PACKAGES)
def test_every_config_field_has_a_doc(package_name: str) -> None:
    pytest.importorskip(package_name)
    classes = config_classes(package_name)
    assert classes, f"no config classes found in {package_name}"
    missing = [
        f"{name}.{field.name}"
        for name, cls in sorted(classes.items())
        for field in attrs.fields(cls)
        if not field_docs(cls).get(field.name)
    ]
    assert not missing, (
        f"{len(missing)} config field(s) without a doc (add an attribute docstring under each): "
        + ", ".join(missing)
    )


def test_the_walk_finds_nested_and_module_level_configs() -> None:
    classes = config_classes("studio")
    assert "studio.config.experiment:ExperimentConfig" in classes
    assert "studio.base:BaseModule.Config" in classes
    assert "studio.data.random_camera:RandomCameraConfig" in classes
    assert not any(name.startswith("studio.specs:") for name in classes)
