"""The ``studio`` command line run in the test's own process (Typer's runner), for end-to-end
tests that need the plugins installed in this environment rather than a fixture site."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from studio.cli.app import app


def invoke(*args: str) -> str:
    """``studio ARGS...``; fails the test with the command's output unless it exits 0."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def run_method(
    method: str, prompt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str
) -> Path:
    """``studio run METHOD prompt=PROMPT OVERRIDES...`` under ``tmp_path/out`` with the models'
    cache in ``tmp_path/cache``, torch seeded 0 and no progress bar; returns its run directory."""
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    out = tmp_path / "out"
    invoke(
        "run",
        method,
        f"prompt={prompt}",
        f"exp_root_dir={out}",
        *overrides,
        "trainer.enable_progress_bar=false",
    )
    (run_dir,) = (out / method).iterdir()
    return run_dir
