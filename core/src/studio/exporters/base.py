"""Exporter contract and the atomic export folder.

An exporter is a :class:`~studio.base.BaseObject` registered under ``system.exporter_type``.
``export(system, out_dir)`` writes its files into ``out_dir`` and returns their paths. The caller
hands it a temporary folder and renames it to ``save/it<step>-export`` only when the exporter
succeeded, so a failed export never leaves partial files behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from studio.base import BaseObject


class BaseExporter(BaseObject):
    config_path = "system.exporter"

    def export(self, system: Any, out_dir: Path) -> list[Path]:
        raise NotImplementedError


def export_atomically(exporter: BaseExporter, system: Any, target: Path) -> list[Path]:
    """Run ``exporter`` into a temporary folder beside ``target`` and swap it in on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        written = exporter.export(system, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = target.with_name(f".{target.name}.previous")
    if target.exists():
        shutil.rmtree(previous, ignore_errors=True)
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    return [target / Path(p).relative_to(staging) for p in written]
