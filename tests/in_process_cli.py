"""The ``studio`` command line run in the test's own process (Typer's runner), for end-to-end
tests that need the plugins installed in this environment rather than a fixture site."""

from __future__ import annotations

from typer.testing import CliRunner

from studio.cli.app import app


def invoke(*args: str) -> str:
    """``studio ARGS...``; fails the test with the command's output unless it exits 0."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output
