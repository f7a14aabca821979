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


def only_cats(prompt: str, negative_prompt: str) -> None:
    """A ``prompt_check``: the model knows cats only."""
    if "cat" not in prompt or negative_prompt:
        raise ValueError("This model draws cats only, with no negative prompt.")


class ModelPlugin:
    """Registers ``name -> "module:attr"`` for every entry of ``targets``, with the registration
    details ``details[name]`` when given."""

    def __init__(self, targets: dict[str, str], details: dict[str, dict] | None = None):
        self.targets = targets
        self.details = details or {}

    @hookimpl
    def studio_register_models(self, register) -> None:
        for name, target in self.targets.items():
            register(name, target, **self.details.get(name, {}))


def make_pipeline(folder: Path, subfolders: tuple[str, ...] = ("unet", "text_encoder")) -> Path:
    """A fake diffusers pipeline folder: ``model_index.json`` plus one config per subfolder."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    for sub in subfolders:
        (folder / sub).mkdir()
        (folder / sub / "config.json").write_text('{"tiny": true}')
    return folder
