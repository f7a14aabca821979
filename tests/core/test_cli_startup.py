"""`studio --help` and `studio plugins list` are fast and import no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import studio_env

PROBE = """
import sys
from studio.cli.app import main
sys.argv = ["studio", *{args!r}]
try:
    main()
except SystemExit:
    pass
print("TORCH_IMPORTED=" + str("torch" in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["plugins", "list"], ["plugins", "list", "--json"]])
def test_light_commands_do_not_import_torch(args, toy_site):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        env=studio_env(toy_site),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "TORCH_IMPORTED=False" in result.stderr, result.stderr
    if args[-1] == "--json":
        names = [p["name"] for p in json.loads(result.stdout)["plugins"]]
        assert "toy" in names


@pytest.mark.parametrize("args", [["--help"], ["plugins", "list"]])
def test_light_commands_start_fast(args, toy_site):
    env = studio_env(toy_site)
    subprocess.run([sys.executable, "-m", "studio", *args], env=env, capture_output=True)  # warm
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "studio", *args], env=env, capture_output=True, text=True
        )
        best = min(best, time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
    assert best < 1.5, f"`studio {' '.join(args)}` took {best:.2f} s"


def test_version():
    result = subprocess.run(
        [sys.executable, "-m", "studio", "--version"], capture_output=True, text=True, check=True
    )
    from studio import __version__

    assert result.stdout.strip() == f"studio {__version__}"
