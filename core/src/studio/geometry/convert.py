"""``system.geometry_convert_from``: start a stage's geometry from another run's (reference 4.1.7).

:func:`convert_geometry` rebuilds the source run's system from its ``configs/parsed.yaml`` (its
geometry config updated with ``geometry_convert_override``), loads the checkpoint's weights and
step state, and hands the source geometry to the target class's
:meth:`~studio.geometry.base.BaseGeometry.create_from` (with ``copy_net`` =
``geometry_convert_inherit_texture``). The source's ``isosurface_threshold: auto`` resolves to the
silhouette-matched level the mesh exporter would choose (:mod:`studio.mesh.auto_threshold`), so a
converted surface is the one the export of that run shows. The returned
:class:`ConversionRecord` says where the geometry came from; the trainer writes it to
``configs/conversion.yaml``.

Conversion runs once, when a stage starts training from scratch; never on resume, ``studio test``
or ``studio export`` (their systems are built with ``resumed=True``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import attrs
import torch

from studio.config.loading import deep_merge, load_yaml_file
from studio.errors import ConfigError, RunDirError
from studio.registry import get_registry, import_target
from studio.rundir import find_checkpoint

log = logging.getLogger(__name__)

CONVERT_KEY = "system.geometry_convert_from"


@attrs.define(kw_only=True)
class ConversionRecord:
    """Where a converted geometry came from."""

    parent: str
    """The source run directory (or the checkpoint's folder when it is outside a run)."""
    checkpoint: str
    """The checkpoint file the source geometry's weights were loaded from."""
    step: int
    """The training step of that checkpoint."""
    source_method: str
    """The method of the source run."""
    source_geometry: str
    """The class name of the source geometry."""
    threshold: Optional[float] = None
    """The source's isosurface level used, when the conversion extracted a surface."""
    threshold_rule: str = ""
    """How the level was chosen: ``configured`` or the auto choice's description."""
    particle: int = 0
    """Which of the source run's particles (and this run's) the geometry is."""

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def check_source(path: str, key: str = CONVERT_KEY) -> None:
    """Raise :class:`ConfigError` naming ``key`` when ``path`` is no run or checkpoint."""
    try:
        _checkpoint, run = find_checkpoint(path, key)
    except RunDirError as exc:
        raise ConfigError(str(exc)) from None
    if run is None:
        raise ConfigError(
            f"{key}={path!r} is a checkpoint outside a run directory, so its configuration "
            "(configs/parsed.yaml beside ckpts/) is unknown. Give the run directory instead."
        )


def source_particles(path: str, key: str = CONVERT_KEY) -> int:
    """How many particles (``system.num_particles``, default 1) the source run trained."""
    _checkpoint, run = find_checkpoint(path, key)
    assert run is not None
    parsed = load_yaml_file(run.parsed_config)
    return int((parsed.get("system") or {}).get("num_particles") or 1)


def load_source_system(
    path: str, override: dict[str, Any], device: torch.device, key: str = CONVERT_KEY
) -> tuple[Any, Path, Path, int, str]:
    """The source run's trained system on ``device`` in eval mode, built from its parsed config
    with ``override`` merged into its geometry config.

    Returns ``(system, checkpoint, run root, step, method name)``."""
    from studio.training.checkpoint import load_checkpoint

    check_source(path, key)
    checkpoint_path, run = find_checkpoint(path, key)
    assert run is not None
    parsed = load_yaml_file(run.parsed_config)
    method = str(parsed["method"])
    system_cfg = dict(parsed["system"])
    if override:
        system_cfg["geometry"] = deep_merge(system_cfg.get("geometry") or {}, override)
    system_cls = import_target(get_registry().get("method", method))
    system = system_cls(system_cfg, resumed=True)
    checkpoint = load_checkpoint(checkpoint_path)
    system.load_state_dict(checkpoint["state_dict"], strict=True)
    step = int(checkpoint["global_step"])
    system.global_step = step
    system.do_update_step(0, step, on_load_weights=True)
    system.to(device).eval()
    return system, checkpoint_path, run.root, step, method


def _resolve_threshold(system: Any) -> tuple[Optional[float], str]:
    """The source geometry's isosurface level: ``auto`` measured against the source renderer."""
    geometry = system.geometry
    configured = getattr(geometry.cfg, "isosurface_threshold", None)
    if configured is None:
        return None, ""
    if configured != "auto":
        return float(configured), "configured"
    if getattr(system, "renderer", None) is None:
        return None, "auto (mean field value; the source has no renderer)"
    from studio.io.progress import StageBars
    from studio.mesh.auto_threshold import silhouette_threshold

    bars = StageBars("conversion: isosurface threshold auto:")
    try:
        choice = silhouette_threshold(system, progress=bars)
    finally:
        bars.close()
    geometry.set_isosurface_threshold(choice.threshold)
    return choice.threshold, choice.describe()


def convert_geometry(
    target_cls: type,
    target_cfg: Any,
    *,
    source: str,
    inherit_texture: bool,
    override: dict[str, Any],
    device: torch.device,
    config_path: str,
    particle: int = 0,
    loaded: Optional[tuple[Any, Path, Path, int, str]] = None,
) -> tuple[Any, ConversionRecord]:
    """``target_cls.create_from(<source run's geometry>, target_cfg, copy_net=inherit_texture)``.

    ``source`` is a run directory, a stage directory or a checkpoint file inside a run;
    ``particle`` picks which of its particles (:mod:`studio.systems.lift3d`); ``loaded`` is
    :func:`load_source_system`'s result when the caller already has it (one load for every
    particle). Returns the new geometry and its :class:`ConversionRecord`."""
    key = config_path.rsplit(".", 1)[0] + ".geometry_convert_from"
    if loaded is None:
        loaded = load_source_system(source, override, device, key)
    system, checkpoint, root, step, method = loaded
    if not hasattr(system, "geometry"):
        raise ConfigError(
            f"{key}={source!r}: that run's system ({type(system).__name__}) has no geometry."
        )
    with torch.no_grad(), system.use_particle(particle):
        threshold, rule = _resolve_threshold(system)
        geometry = target_cls.create_from(
            system.geometry, target_cfg, copy_net=inherit_texture, config_path=config_path
        )
    record = ConversionRecord(
        parent=str(root),
        checkpoint=str(checkpoint),
        step=step,
        source_method=method,
        source_geometry=type(system.geometry).__name__,
        threshold=threshold,
        threshold_rule=rule,
        particle=particle,
    )
    log.info(
        "geometry converted from %s (step %d, %s)%s",
        root,
        step,
        record.source_geometry,
        f" at isosurface level {threshold:.6g} ({rule})" if threshold is not None else "",
    )
    return geometry, record
