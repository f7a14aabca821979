"""The README's quick start works offline: its commands exist, and every `studio run` in it
resolves its config (prompt check included) onto models that ship with the installed plugins.

The quick start is everything of README.md before the block of commands that need downloaded
weights: code-block lines starting with ``studio`` and inline ``studio run ...`` spans. No run is
started (`studio config show` resolves exactly what `studio run` would); the read-only commands
without placeholders run.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
import typer.main
from typer.testing import CliRunner

from studio.cli.app import app
from studio.models.embedded import locate
from studio.registry import get_registry
from tests.conftest import ROOT

#: Where the README's commands that need downloaded weights begin.
DOWNLOADS_HEADING = "With the full text-to-image models"
#: Commands run as they are (read-only, offline, no run directory needed).
RUN_AS_IS = {"methods", "models list", "plugins list", "plugins list --json", "doctor"}
#: Options of `studio run` that `studio config show` does not take (no config effect).
RUN_ONLY = {"--gpus": 1, "--nproc": 1, "--overwrite": 0}


def quick_start() -> list[list[str]]:
    """The quick start's commands as argument lists (without ``studio``; ``[--json]`` kept as
    ``--json``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert DOWNLOADS_HEADING in text, "the README's downloaded-weights block moved"
    head = text.split(DOWNLOADS_HEADING)[0]
    lines, in_block = [], False
    for line in head.splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith("studio "):
            lines.append(line)
    lines += re.findall(r"`(studio run [^`<]+)`", head)  # not `studio run <method>`
    commands = []
    for line in lines:
        words = [w.strip("[]") for w in shlex.split(line, comments=True)][1:]
        if words not in commands:
            commands.append(words)
    return commands


COMMANDS = quick_start()


def command_path(args: list[str]) -> tuple[str, ...]:
    """The (sub)command names ``args`` start with; fails when they name no command."""
    group = typer.main.get_command(app)
    path: list[str] = []
    for word in args:
        commands = getattr(group, "commands", None)
        if commands is None:
            break
        assert word in commands, f"`studio {' '.join([*path, word])}` is no command"
        path.append(word)
        group = commands[word]
    assert getattr(group, "commands", None) is None, f"`studio {' '.join(path)}` needs a command"
    return tuple(path)


def config_show_args(args: list[str]) -> list[str]:
    """``run SOURCE ...`` as ``config show SOURCE ... --json`` (run-only options dropped)."""
    rest, kept = args[1:], []
    while rest:
        word = rest.pop(0)
        if word in RUN_ONLY:
            del rest[: RUN_ONLY[word]]
        else:
            kept.append(word)
    return ["config", "show", *kept, "--json"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("STUDIO_OFFLINE", "1")


def test_the_quick_start_has_the_offline_examples() -> None:
    runs = [c for c in COMMANDS if c[0] == "run"]
    assert {c[1] for c in runs} >= {"dreamfusion-primitives", "sds-2d"}, COMMANDS
    assert any(c[0] == "export" for c in COMMANDS)


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_quick_start_command_works_offline(args: list[str], offline: None) -> None:
    path = command_path(args)
    runner = CliRunner()
    if path == ("run",):
        result = runner.invoke(app, config_show_args(args))
        assert result.exit_code == 0, result.output
        values = {row["key"]: row["value"] for row in json.loads(result.stdout)}
        method = get_registry().get("method", args[1]).spec
        models = {values[key] for key in method.model_keys if key in values}
        assert models, f"`studio {' '.join(args)}` names no model"
        for model in models:
            assert locate(model) is not None, (
                f"`studio {' '.join(args)}` uses {model!r}, which does not ship with the "
                "installed plugins (it needs a download)"
            )
    elif " ".join(args) in RUN_AS_IS:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
