"""`studio plugins new NAME` makes a package that installs, is discovered, and passes its own test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from studio.errors import StudioError
from studio.scaffold.generate import scaffold
from tests.conftest import pip_install_target, studio_env


def test_scaffold_installs_and_its_test_passes(tmp_path):
    created = subprocess.run(
        [sys.executable, "-m", "studio", "plugins", "new", "hello-sky", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    root = tmp_path / "studio-hello-sky"
    expected = {
        "pyproject.toml",
        "README.md",
        "src/studio_hello_sky/plugin.py",
        "src/studio_hello_sky/components.py",
        "src/studio_hello_sky/system.py",
        "src/studio_hello_sky/presets/hello-sky.yaml",
        "tests/test_studio_hello_sky.py",
    }
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert expected <= files

    site = pip_install_target(root, tmp_path / "site")
    env = studio_env(site)
    listed = subprocess.run(
        [sys.executable, "-m", "studio", "plugins", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    plugin = next(p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "hello_sky")
    assert plugin["distribution"] == "studio-hello-sky"
    assert plugin["registers"] == {"method": ["hello-sky"], "background": ["hello-sky-gradient"]}

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


@pytest.mark.parametrize("bad", ["Hello", "1abc", "a--b", "a_b", ""])
def test_bad_names_are_refused(tmp_path, bad):
    with pytest.raises(StudioError, match="is not valid"):
        scaffold(bad, tmp_path)


def test_existing_folder_is_not_overwritten(tmp_path):
    scaffold("mine", tmp_path)
    with pytest.raises(StudioError, match="already exists"):
        scaffold("mine", tmp_path)
