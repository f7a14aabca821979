"""``studio`` commands. Heavy modules (torch, the trainer) are imported inside the commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from studio import __version__
from studio.errors import StudioError

app = typer.Typer(
    name="studio",
    help="Text-to-3D by score distillation: run, resume, test and export methods from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
plugins_app = typer.Typer(
    help="List installed plugins or scaffold a new one.", no_args_is_help=True
)
app.add_typer(plugins_app, name="plugins")
models_app = typer.Typer(
    help="Download pretrained models into the Hugging Face cache, or list the cached and "
    "embedded ones.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
config_app = typer.Typer(help="Show a method's fully resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print :class:`StudioError` as one paragraph (no traceback); Ctrl+C twice exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            code = fn(*args, **kwargs)
        except StudioError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("\nQuit (second Ctrl+C).", err=True)
            raise typer.Exit(130) from None
        if isinstance(code, int) and code != 0:
            raise typer.Exit(code)
        return None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"studio {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Text-to-3D by score distillation."""


def _parse_gpus(gpus: Optional[str]) -> Optional[list[str]]:
    if gpus is None:
        return None
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if not ids or not all(g.isdigit() for g in ids):
        fail(f"--gpus takes a comma-separated list of GPU indices like 0,1; got {gpus!r}.")
    return ids


OVERRIDES = typer.Argument(None, help="Config overrides: dotted.key=value ...", show_default=False)
GPUS = typer.Option(None, "--gpus", help="GPUs to use, e.g. 0,1 (one process per GPU).")
NPROC = typer.Option(
    None, "--nproc", help="Number of CPU processes (gloo); for testing data parallelism."
)


def _shorthand(overrides: list[str], key: str, option: Optional[str]) -> Optional[str]:
    """Take every ``key=value`` token out of ``overrides``; the option, else the last value wins.

    The value is the text as typed (``prompt=no`` is the prompt "no"; quotes are removed)."""
    tokens = [o for o in overrides if o.startswith(f"{key}=")]
    overrides[:] = [o for o in overrides if not o.startswith(f"{key}=")]
    if not tokens or option is not None:
        return option
    from studio.config.loading import override_text, text_value

    value = text_value(override_text(tokens[-1])[1], optional=False) or ""
    if key == "model" and not value.strip():
        fail(f"{tokens[-1]!r} names no model; write model=NAME or --model NAME.")
    return value


@app.command()
@friendly_errors
def run(
    source: str = typer.Argument(
        ..., help="A method name (see `studio methods`) or a YAML config."
    ),
    overrides: Optional[list[str]] = OVERRIDES,
    prompt: Optional[str] = typer.Option(
        None, "--prompt", "-p", help="The text prompt (shorthand for the method's prompt key)."
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="Pretrained model of the guidance and prompt processor (shorthand model=NAME): a "
        "registered name (NAME-sd/NAME-if picked to fit the guidance), a folder or a hub id.",
    ),
    gpus: Optional[str] = GPUS,
    nproc: Optional[int] = NPROC,
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="With use_timestamp=false: replace a finished or stopped run of the same tag.",
    ),
) -> int:
    """Train a method (every stage of a pipeline), then render the test video.

    Everything that can be checked is checked before the run directory is created (the config,
    the optimizer, the devices, the models, writable places); a start that fails before anything
    was trained removes the directory it created."""
    from studio import rundir
    from studio.config.resolve import compose_raw, resolve
    from studio.preflight import check_before_creating
    from studio.registry import get_registry
    from studio.runner import start_new

    overrides = list(overrides or [])
    prompt = _shorthand(overrides, "prompt", prompt)
    model = _shorthand(overrides, "model", model)
    gpu_ids = _parse_gpus(gpus)
    registry = get_registry()
    if source in registry.names("method") and registry.get("method", source).spec.is_pipeline:
        from studio import pipeline

        spec = registry.get("method", source).spec
        created = pipeline.create(
            spec, overrides, prompt, model, gpus=gpu_ids, nproc=nproc, overwrite=overwrite
        )
        typer.echo(f"Run directory: {created.root}", err=True)
        code = pipeline.run(created, gpu_ids, nproc, say=_say, fresh=True)
        typer.echo(f"Run directory: {created.root}", err=True)
        return code
    resolved = resolve(compose_raw(source, overrides, prompt, model))
    check_before_creating(resolved.parsed, resolved.method.spec.model_keys, gpu_ids, nproc)
    run_dir = rundir.create_at(
        rundir.claim_root(resolved.parsed, overwrite), resolved.parsed, resolved.raw
    )
    run_dir.record_command()
    typer.echo(f"Run directory: {run_dir.root}", err=True)
    return start_new(run_dir, gpu_ids, nproc)


def _say(message: str) -> None:
    typer.echo(message, err=True)


STAGE = typer.Option(
    None,
    "--stage",
    help="For a pipeline's run directory: the stage to act on (name or number); default: the "
    "last finished stage.",
)


def _existing(run_dir: str, overrides: Optional[list[str]], stage: Optional[str] = None):
    from studio.errors import RunDirError
    from studio.rundir import open_run
    from studio.runlock import describe, holder
    from studio.runner import reconfigure

    run = open_run(run_dir, stage)
    current = holder(run.root)
    if current is not None:
        raise RunDirError(f"{run.root} is in use by {describe(current)}; wait for it to finish.")
    reconfigure(run, list(overrides or []))
    run.record_command()
    return run


@app.command()
@friendly_errors
def resume(
    run_dir: str = typer.Argument(..., help="The run directory to continue."),
    overrides: Optional[list[str]] = OVERRIDES,
    gpus: Optional[str] = GPUS,
    nproc: Optional[int] = NPROC,
) -> int:
    """Continue training a run (a pipeline: its unfinished stages) from its newest checkpoint.

    A finished run is left as it is, unless the overrides raise ``trainer.max_steps``."""
    from studio.errors import RunDirError
    from studio.preflight import check_devices
    from studio.rundir import PipelineDir, is_pipeline_dir
    from studio.runner import start

    gpu_ids = _parse_gpus(gpus)
    check_devices("auto", gpu_ids, nproc)
    if is_pipeline_dir(run_dir):
        from studio import pipeline

        pipe = PipelineDir(Path(run_dir))
        from studio.runlock import describe, holder

        current = holder(pipe.root)
        if current is not None:
            raise RunDirError(f"{pipe.root} is in use by {describe(current)}; wait for it.")
        pipeline.reconfigure(pipe, list(overrides or []))
        pipe.record_command()
        return pipeline.run(pipe, gpu_ids, nproc, say=_say)
    run = _existing(run_dir, overrides)
    if run.is_finished():
        step = run.finished_step()
        max_steps = int(run.load_parsed()["trainer"]["max_steps"])
        if max_steps <= step:
            typer.echo(
                f"{run.root} finished training at step {step} (its test views are in "
                f"save/it{step}-test/). To train it longer: studio resume {run.root} "
                f"trainer.max_steps={step * 2}; to render again: studio test {run.root}.",
                err=True,
            )
            return 0
        run.finished_marker.unlink(missing_ok=True)
    if run.newest_checkpoint() is None:
        raise RunDirError(
            f"{run.root} has no checkpoint to resume from (the run stopped before its first "
            f"checkpoint). Start it again with `studio run {run.parsed_config}`."
        )
    return start(run, "fit", True, gpu_ids, nproc)


@app.command()
@friendly_errors
def test(
    run_dir: str = typer.Argument(..., help="A run directory with a checkpoint."),
    overrides: Optional[list[str]] = OVERRIDES,
    gpus: Optional[str] = GPUS,
    nproc: Optional[int] = NPROC,
    stage: Optional[str] = STAGE,
) -> int:
    """Render the test views and video of a run's last checkpoint (loads no guidance model)."""
    from studio.runner import start

    return start(_existing(run_dir, overrides, stage), "test", False, _parse_gpus(gpus), nproc)


@app.command()
@friendly_errors
def export(
    run_dir: str = typer.Argument(..., help="A run directory with a checkpoint."),
    overrides: Optional[list[str]] = OVERRIDES,
    stage: Optional[str] = STAGE,
) -> int:
    """Export a run's last checkpoint with the configured exporter (loads no guidance model)."""
    from studio.runner import start

    return start(_existing(run_dir, overrides, stage), "export", False, None, None)


@app.command("eval")
@friendly_errors
def eval_run(
    run_dir: str = typer.Argument(..., help="A run directory (with a checkpoint or test frames)."),
    evaluators: Optional[list[str]] = typer.Option(
        None, "--evaluator", "-e", help="Run only this evaluator (repeatable); default: all."
    ),
    render: Optional[bool] = typer.Option(
        None,
        "--render/--no-render",
        help="Render the test orbit first (as `studio test` does): --render always, --no-render "
        "never; default: only when the last checkpoint has no test frames.",
        show_default=False,
    ),
    stage: Optional[str] = STAGE,
) -> int:
    """Score a run's test frames with the registered evaluators; writes save/eval.json.

    Renders the test orbit of the last checkpoint first when it has none (no guidance model).
    """
    import json

    from studio.eval import evaluate_run, format_record

    out, results = evaluate_run(run_dir, evaluators, render, stage)
    for line in format_record(json.loads(out.read_text(encoding="utf-8"))):
        typer.echo(line)
    typer.echo(f"Wrote {out}")
    return 1 if any("error" in metrics for metrics in results.values()) else 0


@app.command()
@friendly_errors
def methods() -> None:
    """List the methods `studio run` knows, with one line each (and broken plugins)."""
    from studio.registry import get_registry

    registry = get_registry()
    entries = registry.entries("method")
    if not entries:
        typer.echo(
            "No methods are installed. Install a method plugin, e.g. pip install -e plugins/dreamfusion"
        )
    width = max((len(e.name) for e in entries), default=0)
    for entry in entries:
        typer.echo(f"{entry.name.ljust(width)}  {entry.description}  [{entry.plugin.distribution}]")
        for number, stage in enumerate(entry.spec.stages, start=1):
            typer.echo(f"{''.ljust(width)}    stage {number} {stage.name}: {stage.method}")
    for conflict in registry.conflicts:
        if conflict.kind == "method":
            typer.echo(f"CONFLICT {conflict.message()}")
    for broken in registry.broken:
        typer.echo(
            f"BROKEN plugin {broken.plugin.name} ({broken.plugin.distribution}): {broken.error}"
        )


@plugins_app.command("list")
def plugins_list(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Installed plugins: distribution, version and what each registers, per kind."""
    from studio.cli.plugins_cmd import list_plugins

    raise typer.Exit(list_plugins(as_json))


@plugins_app.command("new")
@friendly_errors
def plugins_new(
    name: str = typer.Argument(..., help="Plugin name, e.g. my-method (letters, digits, '-')."),
    directory: Optional[str] = typer.Option(
        None, "--dir", help="Parent folder for the new package (default: current folder)."
    ),
) -> None:
    """Scaffold an external plugin package (entry point, component, method preset, test)."""

    from studio.scaffold.generate import scaffold

    root = scaffold(name, Path(directory or "."))
    typer.echo(f"Created {root}")
    typer.echo(f"Next: pip install -e {root} && pytest {root / 'tests'}")


@models_app.command("pull")
@friendly_errors
def models_pull(
    names: list[str] = typer.Argument(
        ..., help="Hub model ids, e.g. runwayml/stable-diffusion-v1-5."
    ),
    subfolders: Optional[list[str]] = typer.Option(
        None,
        "--subfolder",
        "-s",
        help="Fetch only this subfolder (repeatable, e.g. -s unet -s vae) plus top-level json.",
    ),
) -> None:
    """Download models (only the files loaders use) into the cache; resumes partial downloads."""
    from studio.models.hub import pull_model

    for name in names:
        path = pull_model(name, subfolders=subfolders or None)
        typer.echo(f"{name}: {path}")


@models_app.command("list")
@friendly_errors
def models_list() -> None:
    """Models in the Hugging Face cache (id, size, snapshot folder), then plugins' embedded models."""
    from studio.cli.models_cmd import models_report

    typer.echo(models_report())


@config_app.command("show")
@friendly_errors
def config_show(
    source: str = typer.Argument(
        ..., help="A method name (see `studio methods`) or a YAML config."
    ),
    overrides: Optional[list[str]] = OVERRIDES,
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="The text prompt."),
    model: Optional[str] = typer.Option(None, "--model", help="As for `studio run`."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Every key of the resolved config with its value, default and doc (a pipeline: per stage).

    Required values left unset (the prompt) show as ???."""
    import json

    from studio.config.resolve import compose_raw, resolve
    from studio.config.show import experiment_rows, format_rows
    from studio.registry import get_registry

    overrides = list(overrides or [])
    prompt = _shorthand(overrides, "prompt", prompt)
    model = _shorthand(overrides, "model", model)
    registry = get_registry()
    if source in registry.names("method") and registry.get("method", source).spec.is_pipeline:
        from studio.pipeline import resolve_stages

        spec = registry.get("method", source).spec
        stages = resolve_stages(spec, overrides, prompt, model, allow_missing=True)
        rows = [row for s in stages for row in experiment_rows(s.resolved, s.spec.name)]
    else:
        rows = experiment_rows(resolve(compose_raw(source, overrides, prompt, model), True))
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=2, default=str))
        return
    for line in format_rows(rows):
        typer.echo(line)


@app.command()
def doctor() -> None:
    """Python, torch and CUDA versions; which optional backends are importable and active."""
    from studio.cli.doctor import report

    typer.echo(report())


def main() -> None:
    from studio.registry import add_commands

    add_commands(app)
    app(prog_name="studio")


if __name__ == "__main__":
    main()
    sys.exit(0)
