"""``studio primitives ...``: the training tools as CLI commands, kept out of the runtime imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner, Result

import studio_primitives
from studio_primitives.commands import TOOLS, run_tool
from studio_primitives.data import generate
from studio_primitives.plugin import studio_register_commands
from tests.conftest import studio_env

PACKAGE = Path(studio_primitives.__file__).resolve().parent

#: Each command's help must show an option only its module's parser has.
OWN_OPTION = {
    "data": "--size",
    "train": "--vae-jacobian-weight",
    "train-classifier": "--no-albedo-jitter",
    "sample-check": "--classifier",
}

PROBE = """
import sys
from studio.cli.app import main
sys.argv = ["studio", *{args!r}]
try:
    main()
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("studio_primitives.training"))
print("HEAVY_IMPORTS=" + ",".join(loaded), file=sys.stderr)
"""


def studio(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m studio ARGS`` with the installed plugins, wide enough not to wrap help."""
    return subprocess.run(
        [sys.executable, "-m", "studio", *args],
        env=studio_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def invoke(*args: str) -> Result:
    """Run ``studio ARGS`` in this process on an app holding only the primitives commands."""
    cli = typer.Typer()
    cli.callback()(lambda: None)
    studio_register_commands(cli)
    return CliRunner().invoke(cli, list(args), prog_name="studio", env={"COLUMNS": "200"})


def test_primitives_help_lists_every_command():
    result = studio("primitives", "--help")
    assert result.returncode == 0, result.stderr
    for tool in TOOLS:
        assert tool.name in result.stdout
        assert tool.help in result.stdout
    assert "primitives" in studio("--help").stdout


@pytest.mark.parametrize("args", [["--help"], ["primitives", "--help"]])
def test_help_imports_neither_torch_nor_the_training_tools(args):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        env=studio_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "HEAVY_IMPORTS=\n" in result.stderr, result.stderr
    assert "primitives" in result.stdout


def test_train_help_through_the_real_entry_point_is_the_modules_own():
    result = studio("primitives", "train", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: studio primitives train [-h] --form {sd,if} --out OUT")
    assert "--vae-jacobian-weight" in result.stdout


@pytest.mark.parametrize("tool", TOOLS, ids=[t.name for t in TOOLS])
def test_command_help_is_the_modules_own(tool):
    result = invoke("primitives", tool.name, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"usage: studio primitives {tool.name} ")
    assert tool.help in result.stdout  # the module parser's description, as listed
    assert OWN_OPTION[tool.name] in result.stdout
    assert invoke("primitives", tool.name, "-h").stdout == result.stdout


def test_data_command_writes_a_data_set(tmp_path):
    out = tmp_path / "set"
    result = studio(
        "primitives", "data", "--out", str(out), "--n", "2", "--seed", "3", "--size", "16"
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote 2 images and captions.jsonl to {out}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "captions.jsonl"]
    records = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    for sample, record in zip(generate(2, seed=3, size=16), records, strict=True):
        assert record["caption"] == sample.caption
        assert np.array_equal(np.asarray(Image.open(out / record["file"])), sample.image)


def test_module_errors_keep_their_exit_codes(tmp_path):
    result = invoke("primitives", "data", "--n", "2")  # argparse: --out is required
    assert result.exit_code == 2
    assert "studio primitives data: error: the following arguments are required: --out" in (
        result.stderr
    )
    result = invoke("primitives", "data", "--out", str(tmp_path), "--n", "1")  # it exists
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = invoke("primitives", "nonsense")
    assert result.exit_code == 2 and "No such command" in result.output


def test_a_studio_error_is_one_line(capsys):
    code = run_tool("studio_primitives.training.train_classifier", ["--n", "-1"])
    assert code == 2
    assert (
        capsys.readouterr().err
        == "error: generate needs n >= 0 and size >= 1; got n=-1, size=64.\n"
    )


def test_python_dash_m_still_runs_a_tool():
    result = subprocess.run(
        [sys.executable, "-m", "studio_primitives.training.dataset", "--help"],
        env=studio_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--out OUT" in result.stdout


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` in ``path`` names, at any depth (function-level included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_runtime_modules_do_not_import_the_training_tools():
    runtime = [p for p in PACKAGE.rglob("*.py") if "training" not in p.relative_to(PACKAGE).parts]
    assert {"plugin.py", "commands.py", "data.py", "evaluation.py"} <= {p.name for p in runtime}
    for path in runtime:
        training = {m for m in imported_modules(path) if m.startswith("studio_primitives.training")}
        assert not training, f"{path.relative_to(PACKAGE)} imports {sorted(training)}"


def test_every_tool_module_has_a_main():
    for tool in TOOLS:
        path = PACKAGE / Path(*tool.module.split(".")[1:]).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), path
