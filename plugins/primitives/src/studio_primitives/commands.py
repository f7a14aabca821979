"""The ``studio primitives`` commands: the tools of :mod:`studio_primitives.training`.

Each command hands its arguments unchanged to its module's argparse ``main(argv)``, so
``studio primitives train --help`` prints that module's own help and every option keeps its
meaning and default. Importing this module is cheap (typer only): the CLI builds the commands at
every start, and a command imports its module (and torch) only when it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import typer

#: Click settings of a command that passes every argument, ``--help`` included, to its module.
PASS_THROUGH: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True}


class Tool(NamedTuple):
    """One ``studio primitives`` command: its name, the module whose ``main(argv) -> int`` it
    runs, and its one-line help (the module parser's description)."""

    name: str
    module: str
    help: str


TOOLS: tuple[Tool, ...] = (
    Tool(
        "data",
        "studio_primitives.training.dataset",
        "Render the primitives data set (PNGs + captions.jsonl).",
    ),
    Tool(
        "train",
        "studio_primitives.training.train",
        "Train a primitives diffusion model (SD or IF form) and save its pipeline.",
    ),
    Tool(
        "train-classifier",
        "studio_primitives.training.train_classifier",
        "Train the primitives shape-and-colour classifier on CPU.",
    ),
    Tool(
        "sample-check",
        "studio_primitives.training.sample_check",
        "Sample a saved primitives pipeline and score the samples with a classifier.",
    ),
)


def run_tool(module: str, argv: Sequence[str]) -> int:
    """``main(argv)`` of ``module``; a :class:`StudioError` it lets through is printed as one
    ``error:`` line and becomes its exit code (argparse's own exits pass through unchanged)."""
    from studio.api import StudioError

    main = importlib.import_module(module).main
    try:
        return int(main(list(argv)) or 0)
    except StudioError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code


def tool_command(tool: Tool) -> Callable[[typer.Context], None]:
    """The typer callback of ``tool``: runs it on the command's unparsed arguments."""

    def command(ctx: typer.Context) -> None:
        code = run_tool(tool.module, ctx.args)
        if code:
            raise typer.Exit(code)

    command.__name__ = tool.name.replace("-", "_")
    return command


def primitives_app() -> typer.Typer:
    """The ``primitives`` sub-app with one command per :data:`TOOLS` entry."""
    app = typer.Typer(
        help="Write the primitives data set, train the embedded models and the classifier, "
        "score a saved pipeline.",
        no_args_is_help=True,
    )
    for tool in TOOLS:
        app.command(
            tool.name,
            help=tool.help,
            context_settings=PASS_THROUGH,
            add_help_option=False,
        )(tool_command(tool))
    return app
