"""A fake plugin shipping embedded models: callables return folders the test chose (``FOLDERS``)."""

from __future__ import annotations

from pathlib import Path

from studio.hookspecs import hookimpl

#: registered name -> the folder its callable returns (set by the ``embedded_models`` fixture).
FOLDERS: dict[str, Path] = {}
HERE = "tests.core.embedded_models"


def toy_sd() -> Path:
    return FOLDERS["toy-sd"]


def toy_if() -> Path:
    return FOLDERS["toy-if"]


def raises() -> Path:
    raise RuntimeError("weights were not unpacked")


def missing_folder() -> str:
    return "/nonexistent/studio-test-weights"


class ModelPlugin:
    """Registers ``name -> "module:attr"`` for every entry of ``targets``."""

    def __init__(self, targets: dict[str, str]):
        self.targets = targets

    @hookimpl
    def studio_register_models(self, register) -> None:
        for name, target in self.targets.items():
            register(name, target)


def make_pipeline(folder: Path, subfolders: tuple[str, ...] = ("unet", "text_encoder")) -> Path:
    """A fake diffusers pipeline folder: ``model_index.json`` plus one config per subfolder."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    for sub in subfolders:
        (folder / sub).mkdir()
        (folder / sub / "config.json").write_text('{"tiny": true}')
    return folder
