"""Write a new, working plugin package: entry point, a component, a system, a preset and a test.

The generated method is a lift-3D method: DreamFusion's system on the embedded primitives model
(its preset ``extends: dreamfusion-primitives``) with the plugin's own background component and
one regulariser of its own. It trains in seconds on a CPU and shows every part of the plugin
contract; the plugin imports studio-core through ``studio.api`` only.
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
# The method's preset extends dreamfusion-primitives (studio-primitives, on studio-dreamfusion).
dependencies = [
    "studio-core>={core_version}",
    "studio-dreamfusion>={core_version}",
    "studio-primitives>={core_version}",
]

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

A studio plugin: a lift-3D method, DreamFusion on the embedded primitives model with this
plugin's own background (two learnable colours blended by height) and one regulariser of its own.
After `pip install -e .`:

```
studio plugins list              # {entry}: method {name}, background {name}-gradient
studio config show {name}        # every key, value and doc (the preset extends dreamfusion-primitives)
studio run {name} prompt="a red cube"
pytest tests
```

Files: `src/{package}/plugin.py` registers the names (lazily, as import paths),
`components.py` holds the background, `system.py` the method's system and
`presets/{name}.yaml` its configuration: `extends: dreamfusion-primitives` plus what differs.
Import studio-core only through `studio.api`.
""",
    "src/{package}/__init__.py": '''"""The {name} studio plugin."""
''',
    "src/{package}/plugin.py": '''"""Hook implementations: what this plugin registers. Keep imports here light (no torch)."""

from studio.api import hookimpl
from studio_dreamfusion.plugin import GUIDED_METHOD_KEYS


@hookimpl
def studio_register_backgrounds(register):
    register("{name}-gradient", "{package}.components:GradientBackground")


@hookimpl
def studio_register_methods(register):
    register(
        "{name}",
        system="{package}.system:PlainSkySystem",
        preset="{package}:presets/{name}.yaml",
        description="DreamFusion with a two-colour gradient background (plugin template).",
        **GUIDED_METHOD_KEYS,  # where prompt=, model= and `studio eval` find their keys
    )
''',
    "src/{package}/components.py": '''"""A background: colour = blend of two learnable colours by the ray's height (z)."""

import attrs
import torch

from studio.api import BaseBackground


class GradientBackground(BaseBackground):
    @attrs.define(kw_only=True)
    class Config(BaseBackground.Config):
        n_output_dims: int = 3
        """Colour channels of the background."""

    def configure(self) -> None:
        self.bottom = torch.nn.Parameter(torch.zeros(self.cfg.n_output_dims))
        self.top = torch.nn.Parameter(torch.zeros(self.cfg.n_output_dims))

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        """Colours in [0, 1] for unit ray directions ``[..., 3]``."""
        t = (dirs[..., 2:3] + 1) / 2
        return torch.sigmoid(self.bottom * (1 - t) + self.top * t)
''',
    "src/{package}/system.py": '''"""The method's system: DreamFusion's (SDS + regularisers) plus a regulariser of this plugin."""

import attrs
import torch

from studio_dreamfusion.system import DreamFusionSystem


def colour_spread(background) -> torch.Tensor:
    """``|top - bottom|^2`` of the gradient background's two colours (0 for a plain one)."""
    return (torch.sigmoid(background.top) - torch.sigmoid(background.bottom)).square().sum()


class PlainSkySystem(DreamFusionSystem):
    """``system.loss.lambda_plain_sky`` keeps the background's two colours close."""

    @attrs.define(kw_only=True)
    class Config(DreamFusionSystem.Config):
        pass

    @classmethod
    def loss_terms(cls, cfg):
        """DreamFusion's terms plus ``plain_sky`` (so ``lambda_plain_sky`` is a known key)."""
        terms = super().loss_terms(cfg)
        return None if terms is None else terms | {{"plain_sky"}}

    def training_step(self, batch):
        out = super().training_step(batch)
        weight = self.C(self.cfg.loss.get("lambda_plain_sky", 0.0))
        if weight > 0:
            spread = colour_spread(self.background)
            out["loss"] = out["loss"] + weight * spread
            out["loss_plain_sky"] = spread.detach()
        return out
''',
    "src/{package}/presets/{name}.yaml": """# `studio run {name}`: dreamfusion-primitives (offline, CPU minutes) with this plugin's
# background and regulariser. Only what differs from the extended preset is listed.
extends: dreamfusion-primitives
name: {name}
system:
  background_type: {name}-gradient
  background:
    n_output_dims: 3
  loss:
    lambda_plain_sky: 1.0
""",
    "tests/test_{package}.py": '''"""Runs the plugin's method end to end through the `studio` CLI (plugin must be pip-installed)."""

import json
import subprocess
import sys

from studio.api import load_checkpoint


def studio(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], cwd=cwd, capture_output=True, text=True
    )


def test_plugin_is_discovered_and_its_preset_extends_dreamfusion_primitives():
    listed = studio("plugins", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    plugins = {{p["name"]: p for p in json.loads(listed.stdout)["plugins"]}}
    assert plugins["{entry}"]["registers"]["method"] == ["{name}"]
    assert plugins["{entry}"]["registers"]["background"] == ["{name}-gradient"]
    shown = studio("config", "show", "{name}", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {{row["key"]: row["value"] for row in json.loads(shown.stdout)}}
    assert rows["system.background_type"] == "{name}-gradient"
    assert rows["system.guidance.pretrained_model_name_or_path"] == "primitives-sd"  # inherited


def test_method_trains_and_renders(tmp_path):
    result = studio(
        "run", "{name}", "prompt=a red cube", "trainer.max_steps=4", "data.n_test_views=2",
        "trainer.enable_progress_bar=false", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "outputs" / "{name}").iterdir()
    assert (run_dir / "save" / "it4-test.mp4").is_file()
    checkpoint = load_checkpoint(run_dir / "ckpts" / "last.ckpt")
    assert {{"background.bottom", "background.top"}} <= set(checkpoint["state_dict"])
    assert "train/loss_plain_sky" in (run_dir / "metrics.csv").read_text()
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
