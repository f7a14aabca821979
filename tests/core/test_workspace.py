"""Every distribution of the workspace builds on its own and declares what it needs."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, build_wheel

PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def test_workspace_layout():
    for path in [
        "core/pyproject.toml",
        "Makefile",
        "README.md",
        ".ci/run",
        "pyproject.toml",
        "docs/architecture.md",
        "docs/writing-a-plugin.md",
    ]:
        assert (ROOT / path).is_file(), path
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"outputs/", ".venv/", ".device/"} <= set(ignored)
    assert {p.name for p in PLUGINS} >= {
        "dreamfusion",
        "magic3d",
        "sjc",
        "latentnerf",
        "fantasia3d",
        "prolificdreamer",
        "primitives",
    }


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugin_distribution_builds_alone(plugin: Path, tmp_path):
    meta = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    assert meta["name"] == f"studio-{plugin.name}"
    assert any(d.startswith("studio-core") for d in meta["dependencies"])
    assert meta["entry-points"]["studio.plugins"] == {plugin.name: f"studio_{plugin.name}.plugin"}
    wheel = build_wheel(plugin, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: studio-core" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert f"studio_{plugin.name}/plugin.py" in names


@pytest.mark.parametrize("folder", [ROOT / "core", *PLUGINS], ids=lambda p: p.name)
def test_licence_is_an_spdx_expression(folder: Path):
    """setuptools deprecates the ``{ text = ... }`` table (a warning on every install); the SPDX
    string needs setuptools 77 or newer to build."""
    pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert pyproject["build-system"]["requires"] == ["setuptools>=77"]
