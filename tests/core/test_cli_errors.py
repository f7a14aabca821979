"""Bad input on the command line: one paragraph naming the dotted path, no traceback, exit 2."""

from __future__ import annotations

import pytest

CASES = [
    (
        ["run", "toy-fit", "prompt=a cube", "system.optimizer.args.lrr=0.1", "system.lose.x=1"],
        ["system.lose: unknown key (did you mean 'system.loss'?"],
    ),
    (
        ["run", "toy-fit", "prompt=a cube", "trainer.max_step=5"],
        ["trainer.max_step: unknown key (did you mean 'trainer.max_steps'?"],
    ),
    (
        ["run", "toy-fit", "prompt=a cube", "trainer.max_steps=lots"],
        ["trainer.max_steps: expected an integer, got str 'lots'"],
    ),
    (
        ["run", "toy-fit", "prompt=a cube", "data.height=[8, x]"],
        ["data.height[1]: expected an integer, got str 'x'"],
    ),
    (
        ["run", "toy-fit"],
        ['a required value is missing: system.prompt (set it with prompt="...")'],
    ),
    (
        ["run", "toy-fit", "prompt=lib:zzzqqq"],
        ["system.prompt: no prompt of the DreamFusion library contains all of the keywords"],
    ),
    (
        ["run", "toy-fit", "--prompt", "lib:a"],
        ["system.prompt: 'lib:a' matches", "Add keywords"],
    ),
    (
        ["run", "toy-fitt", "prompt=x"],
        ["No method named 'toy-fitt' is registered. Did you mean 'toy-fit'"],
    ),
    (
        ["run", "toy-fit", "prompt=x", "system.background_type=toy-direction"],
        ["system.background_type: No background named 'toy-direction'"],
    ),
    (
        ["run", "toy-fit", "prompt=x", "system.scheduler.name=CosineLR"],
        ["system.scheduler.name: expected one of"],
    ),
    (
        ["resume", "does/not/exist"],
        ["'does/not/exist' is not a directory"],
    ),
    (
        ["run", "toy-fit", "oops"],
        ["Cannot read the command-line override 'oops'"],
    ),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0][1:3]) for c in CASES])
def test_config_errors_are_one_paragraph(studio_cli, args, expected):
    result = studio_cli.run(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: ")
    assert "\n" not in message, message
    for fragment in expected:
        assert fragment in message
    assert not (studio_cli.cwd / "outputs").exists()  # nothing created for a bad config
