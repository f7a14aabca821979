"""Write a new, working plugin package: entry point, a component, a method preset and a test.

The generated method fits a learnable two-colour gradient background to a target colour; it is
small enough to train in seconds on a CPU and shows every part of the plugin contract.
"""

from __future__ import annotations

import re
from pathlib import Path

from studio import __version__
from studio.errors import StudioError

_FILES: dict[str, str] = {
    "pyproject.toml": """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A studio plugin: {name}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["studio-core>={core_version}"]

[project.optional-dependencies]
test = ["pytest"]

# studio finds plugins through this entry-point group.
[project.entry-points."studio.plugins"]
{entry} = "{package}.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
{package} = ["presets/*.yaml"]
""",
    "README.md": """# {dist}

A studio plugin. After `pip install -e .`:

```
studio plugins list          # shows {entry}: method {name}, background {name}-gradient
studio run {name} prompt="a blue sky" trainer.max_steps=50
pytest tests
```

Files: `src/{package}/plugin.py` registers the names (lazily, as import paths),
`components.py` holds the background, `system.py` the method's system and
`presets/{name}.yaml` its default configuration.
""",
    "src/{package}/__init__.py": '''"""The {name} studio plugin."""
''',
    "src/{package}/plugin.py": '''"""Hook implementations: what this plugin registers. Keep imports here light (no torch)."""

from studio.hookspecs import hookimpl


@hookimpl
def studio_register_backgrounds(register):
    register("{name}-gradient", "{package}.components:GradientBackground")


@hookimpl
def studio_register_methods(register):
    register(
        "{name}",
        "{package}.system:GradientFitSystem",
        preset="{package}:presets/{name}.yaml",
        description="Fit a two-colour gradient background to a target colour (plugin template).",
        prompt_key="system.prompt",
    )
''',
    "src/{package}/components.py": '''"""A background component: colour = blend of two learnable colours by the ray's height (z)."""

import attrs
import torch

from studio.base import BaseModule


class GradientBackground(BaseModule):
    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        n_output_dims: int = 3

    def configure(self) -> None:
        self.bottom = torch.nn.Parameter(torch.zeros(self.cfg.n_output_dims))
        self.top = torch.nn.Parameter(torch.zeros(self.cfg.n_output_dims))

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        """Colours in [0, 1] for unit ray directions ``[..., 3]``."""
        t = (dirs[..., 2:3] + 1) / 2
        return torch.sigmoid(self.bottom * (1 - t) + self.top * t)
''',
    "src/{package}/system.py": '''"""The method's system: render the background for each camera ray and regress a target colour."""

import attrs
import torch

from studio.io.saver import rgb
from studio.registry import get_registry
from studio.systems.base import BaseSystem


class GradientFitSystem(BaseSystem):
    @attrs.define(kw_only=True)
    class Config(BaseSystem.Config):
        prompt: str = ""
        target_color: list[float] = attrs.Factory(lambda: [0.2, 0.4, 0.9])
        background_type: str = "{name}-gradient"
        background: dict = attrs.Factory(dict)

    def configure(self) -> None:
        background_cls = get_registry().load("background", self.cfg.background_type)
        self.background = background_cls(self.cfg.background)

    def target(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.cfg.target_color, device=like.device).expand_as(like)

    def training_step(self, batch):
        colours = self.background(batch["rays_d"])
        mse = torch.nn.functional.mse_loss(colours, self.target(colours))
        return {{"loss": mse * self.C(self.cfg.loss.get("lambda_color", 1.0)), "mse": mse}}

    def validation_step(self, batch, index):
        image = self.background(batch["rays_d"][0])
        self.saver.image_grid(self.validation_image_name(index), [rgb(image), rgb(self.target(image))])

    def test_step(self, batch, index):
        self.saver.image_grid(self.test_image_name(index), [rgb(self.background(batch["rays_d"][0]))])
''',
    "src/{package}/presets/{name}.yaml": """# Default configuration of `studio run {name}`; override any key on the command line.
method: {name}
name: {name}
data_type: random-camera
data:
  batch_size: 2
  height: 16
  width: 16
  eval_height: 32
  eval_width: 32
  n_val_views: 2
  n_test_views: 8
system:
  prompt: "a {name} run"
  target_color: [0.2, 0.4, 0.9]
  loss:
    lambda_color: 1.0
  optimizer:
    name: Adam
    args: {{lr: 0.1}}
trainer:
  max_steps: 100
  val_check_interval: 50
""",
    "tests/test_{package}.py": '''"""Runs the plugin's method end to end through the `studio` CLI (plugin must be pip-installed)."""

import json

import torch
from typer.testing import CliRunner

from studio.cli.app import app
from studio.training.checkpoint import load_checkpoint


def test_plugin_is_discovered():
    result = CliRunner().invoke(app, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    names = {{p["name"]: p for p in json.loads(result.output)["plugins"]}}
    assert names["{entry}"]["registers"]["method"] == ["{name}"]
    assert names["{entry}"]["registers"]["background"] == ["{name}-gradient"]


def test_method_trains_and_renders(tmp_path):
    args = ["run", "{name}", f"exp_root_dir={{tmp_path}}", "trainer.max_steps=40",
            "trainer.enable_progress_bar=false"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "{name}").iterdir())
    assert (run_dir / "save" / "it40-test.mp4").is_file()
    state = load_checkpoint(run_dir / "ckpts" / "last.ckpt")["state_dict"]
    learned = torch.sigmoid((state["background.bottom"] + state["background.top"]) / 2)
    assert torch.allclose(learned, torch.tensor([0.2, 0.4, 0.9]), atol=0.1), learned
''',
}


def names_for(name: str) -> dict[str, str]:
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise StudioError(
            f"Plugin name {name!r} is not valid: use lower-case letters, digits and single dashes, "
            f"starting with a letter (e.g. my-method)."
        )
    package = "studio_" + name.replace("-", "_")
    return {
        "name": name,
        "dist": f"studio-{name}",
        "package": package,
        "entry": name.replace("-", "_"),
        "core_version": __version__,
    }


def scaffold(name: str, parent: Path) -> Path:
    """Create ``parent/studio-<name>/`` and return it; refuses to overwrite an existing folder."""
    values = names_for(name)
    root = parent / values["dist"]
    if root.exists():
        raise StudioError(f"{root} already exists; choose another name or remove it first.")
    for relative, template in _FILES.items():
        path = root / relative.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return root
