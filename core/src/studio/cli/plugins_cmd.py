"""``studio plugins list``: what is installed, what each plugin registers, what is broken."""

from __future__ import annotations

import json

import attrs
import typer

from studio.registry import KINDS, get_registry


def plugins_report() -> dict:
    """Plain data describing every discovered plugin (the ``--json`` output)."""
    registry = get_registry()
    plugins = []
    for info in registry.plugins:
        registered = {k: v for k, v in registry.by_plugin(info).items() if v}
        pipelines = {
            entry.name: [attrs.asdict(stage) for stage in entry.spec.stages]
            for entry in registry.entries("method")
            if entry.plugin == info and entry.spec.is_pipeline
        }
        plugins.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "registers": registered,
                "pipelines": pipelines,
            }
        )
    return {
        "plugins": plugins,
        "broken": [
            {
                "name": b.plugin.name,
                "distribution": b.plugin.distribution,
                "version": b.plugin.version,
                "error": b.error,
            }
            for b in registry.broken
        ],
        "disabled": [
            {"name": d.name, "distribution": d.distribution, "version": d.version}
            for d in registry.disabled
        ],
        "conflicts": [
            {
                "kind": c.kind,
                "name": c.name,
                "distributions": [c.first.plugin.distribution, c.second.plugin.distribution],
                "message": c.message(),
            }
            for c in registry.conflicts
        ],
    }


def list_plugins(as_json: bool) -> int:
    """Print the report; exit code 1 when names conflict (runs would fail), else 0."""
    report = plugins_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return 1 if report["conflicts"] else 0
    for plugin in report["plugins"]:
        typer.echo(f"{plugin['name']}  ({plugin['distribution']} {plugin['version']})")
        if not plugin["registers"]:
            typer.echo("    (registers nothing yet)")
        for kind in KINDS:
            names = plugin["registers"].get(kind)
            if names:
                typer.echo(f"    {kind.replace('_', ' ')}: {', '.join(names)}")
        for name, stages in plugin["pipelines"].items():
            steps = " -> ".join(f"{s['name']} ({s['method']})" for s in stages)
            typer.echo(f"    pipeline {name}: {steps}")
    for broken in report["broken"]:
        typer.echo(
            f"BROKEN {broken['name']}  ({broken['distribution']} {broken['version']}): "
            f"{broken['error']}"
        )
    for disabled in report["disabled"]:
        typer.echo(
            f"disabled {disabled['name']}  ({disabled['distribution']} {disabled['version']}) "
            f"by STUDIO_DISABLE_PLUGINS"
        )
    for conflict in report["conflicts"]:
        typer.echo(f"CONFLICT {conflict['message']}")
    return 1 if report["conflicts"] else 0
