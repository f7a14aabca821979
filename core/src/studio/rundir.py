"""The run directory ``<exp_root_dir>/<name>/<tag>@<timestamp>/`` and its files.

::

    configs/raw.yaml      what was asked for (preset + YAML + overrides, unresolved)
    configs/parsed.yaml   the fully resolved config (``studio resume`` needs only this)
    ckpts/last.ckpt       latest checkpoint (+ step=<N>.ckpt periodic ones)
    save/                 it<step>-<i>.png validation grids, it<step>-test/ frames, it<step>-test.mp4,
                          it<step>-export/ exports
    metrics.csv           per-step scalars
    cmd.txt               the command line that created (or resumed) the run
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.config.loading import dump_yaml, load_yaml_file
from studio.errors import RunDirError


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def raw_config(self) -> Path:
        return self.configs / "raw.yaml"

    @property
    def parsed_config(self) -> Path:
        return self.configs / "parsed.yaml"

    @property
    def ckpts(self) -> Path:
        return self.root / "ckpts"

    @property
    def last_ckpt(self) -> Path:
        return self.ckpts / "last.ckpt"

    @property
    def save(self) -> Path:
        return self.root / "save"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def cmd(self) -> Path:
        return self.root / "cmd.txt"

    def load_parsed(self) -> dict[str, Any]:
        return load_yaml_file(self.parsed_config)

    def record_command(self, argv: list[str] | None = None) -> None:
        argv = sys.argv if argv is None else argv
        line = " ".join(shlex.quote(a) for a in argv)
        with self.cmd.open("a", encoding="utf-8") as handle:
            handle.write(f"{_dt.datetime.now().isoformat(timespec='seconds')} {line}\n")


def new_timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def create(parsed: dict[str, Any], raw: dict[str, Any]) -> RunDir:
    """Make a new run directory for ``parsed`` (fills in ``timestamp``) and write its configs."""
    base = Path(parsed["exp_root_dir"]) / parsed["name"]
    tag = parsed["tag"]
    if parsed.get("use_timestamp", True):
        if not parsed.get("timestamp"):
            parsed["timestamp"] = new_timestamp()
        leaf = f"{tag}@{parsed['timestamp']}"
    else:
        leaf = tag
    root = base / leaf
    suffix = 1
    while parsed.get("use_timestamp", True) and root.exists():
        root = base / f"{leaf}-{suffix}"
        suffix += 1
    run = RunDir(root)
    for folder in (run.configs, run.ckpts, run.save):
        folder.mkdir(parents=True, exist_ok=True)
    run.raw_config.write_text(dump_yaml(raw), encoding="utf-8")
    run.parsed_config.write_text(dump_yaml(parsed), encoding="utf-8")
    return run


def open_existing(path: str | Path) -> RunDir:
    """A :class:`RunDir` for an existing run (``RunDirError`` explaining what is missing)."""
    run = RunDir(Path(path))
    if not run.root.is_dir():
        raise RunDirError(
            f"{str(path)!r} is not a directory. Pass the run directory printed by `studio run`, "
            f"e.g. outputs/<name>/<tag>@<timestamp>."
        )
    if not run.parsed_config.is_file():
        raise RunDirError(
            f"{str(path)!r} is not a studio run directory: configs/parsed.yaml is missing."
        )
    return run
