"""Shared fixtures: the test-only plugin installed as a real package, and a CLI runner."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOY_PLUGIN = ROOT / "tests" / "fixtures" / "toyplugin"


def _pip_in_copy(source: Path, *args: str) -> None:
    """Run ``pip <args> <copy of source>``; the copy keeps build metadata out of the source tree."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.egg-info", "build"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                *args,
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--disable-pip-version-check",
                str(copy),
            ],
            check=True,
            capture_output=True,
        )


def pip_install_target(source: Path, target: Path) -> Path:
    """Build ``source`` (a project folder) into a wheel and install it under ``target``."""
    _pip_in_copy(source, "install", "--target", str(target))
    return target


def build_wheel(source: Path, wheel_dir: Path) -> Path:
    """Build ``source`` into a wheel in ``wheel_dir``; returns the wheel's path."""
    _pip_in_copy(source, "wheel", "--wheel-dir", str(wheel_dir))
    (wheel,) = wheel_dir.glob("*.whl")
    return wheel


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs ``-n``), each worker process and the ``studio``
    subprocesses it starts get an equal share of the cores: two workers each using torch's default
    of one thread per core would run twice as many threads as the machine has."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy plugin pip-installed (wheel built from tests/fixtures/toyplugin) into a folder."""
    return pip_install_target(TOY_PLUGIN, tmp_path_factory.mktemp("toy-site"))


def studio_env(*sites: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(s) for s in sites] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("STUDIO_DISABLE_PLUGINS", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Studio:
    """Runs ``python -m studio ...`` as a subprocess with the toy plugin installed."""

    def __init__(self, site: Path, cwd: Path):
        self.site = site
        self.cwd = cwd

    def env(self, **extra: str) -> dict[str, str]:
        return studio_env(self.site, **extra)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "studio", *args]

    def run(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args),
            cwd=self.cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.cwd,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_dirs(self, name: str = "toy") -> list[Path]:
        base = self.cwd / "outputs" / name
        return sorted(base.iterdir()) if base.is_dir() else []


@pytest.fixture
def studio_cli(toy_site: Path, tmp_path: Path) -> Studio:
    return Studio(toy_site, tmp_path)


def logged_steps(run_dir: Path) -> int:
    """The highest step in a run's metrics.csv (0 when none yet)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return 0
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return max((int(r["step"]) for r in rows), default=0)


def wait_for_step(
    studio: Studio, step: int, proc: subprocess.Popen, timeout: float = 120, name: str = "toy"
) -> Path:
    """Wait until the (only) run of ``studio`` named ``name`` has logged ``step``; returns its
    run directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended early ({proc.returncode}):\n{out}\n{err}")
        dirs = studio.run_dirs(name)
        if dirs and logged_steps(dirs[0]) >= step:
            return dirs[0]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    raise AssertionError(f"step {step} not reached within {timeout} s")


@pytest.fixture
def toy_plugin(studio_plugin, tmp_path_factory) -> Iterator[None]:
    """The toy plugin registered in-process through the ``studio_plugin`` fixture.

    Only the import package is put on ``sys.path`` (a copy without packaging metadata, which a
    wheel build may leave in the source tree and which would register the entry point again).
    """
    src = tmp_path_factory.mktemp("toy-src")
    shutil.copytree(TOY_PLUGIN / "src" / "studio_toy", src / "studio_toy")
    sys.path.insert(0, str(src))
    import studio_toy.plugin

    studio_plugin(studio_toy.plugin, name="toy", distribution="studio-toy")
    yield
    sys.path.remove(str(src))
    for name in [m for m in sys.modules if m == "studio_toy" or m.startswith("studio_toy.")]:
        del sys.modules[name]
