"""Pipelines: methods made of stages run in order in one run directory (Magic3D's coarse then
refine, ProlificDreamer's coarse, geometry, texture).

A pipeline is registered as a :class:`~studio.specs.MethodSpec` with ``stages``; each stage is an
ordinary single-stage method. ``studio run PIPELINE key=value ...``:

* **Overrides.** ``STAGE.dotted.key=value`` (``refine.trainer.max_steps=3000``) sets a key of one
  stage. An unprefixed ``dotted.key=value`` (``seed=1``, ``system.prompt_processor.negative_prompt=
  ...``) is shared: it applies to every stage whose resolved config has that key, and one that no
  stage has is an error naming the closest key. ``prompt=`` and ``model=`` are given once and set
  each stage's own prompt and model keys; a stage method's own shorthands (``guide_shape=cube``,
  :attr:`~studio.specs.MethodSpec.shorthands`) set that key of each stage that declares one.
  Stage overrides win over shared ones.
* **Validation first.** Every stage's config is resolved before anything is created; a stage's
  ``takes`` key (``system.geometry_convert_from``) is left empty then and set, once the directories
  exist, to the previous stage's run directory.
* **Layout.** ``<exp_root_dir>/<name>/<tag>@<timestamp>/pipeline.yaml`` lists the stages; each
  stage is a complete run directory ``stages/<n>-<stage>/`` (configs, checkpoints, images,
  ``finished.yaml`` once trained and tested).
* **Running and resuming.** Stages run in order; a finished stage is skipped, a stage with a
  checkpoint resumes from it, a stage without one starts (and converts its geometry) from scratch.
  So ``studio resume RUN`` continues anywhere, inside a stage or between two.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from studio.config.loading import (
    dump_yaml,
    get_dotted,
    parse_override,
    set_dotted,
)
from studio.config.resolve import (
    ResolvedConfig,
    apply_shorthands,
    apply_user_overrides,
    expand_method_shorthands,
    load_preset,
    method_registration,
    resolve,
)
from studio.errors import ConfigError, StudioError
from studio.rundir import (
    PIPELINE_FILE,
    STAGES_DIR,
    PipelineDir,
    claim_root,
    create_at,
    remove_untrained,
    stage_dir_name,
    write_text_atomic,
)
from studio.specs import MethodSpec, StageSpec

#: Top-level keys that place the pipeline's run directory (taken from the shared overrides).
ROOT_KEYS = ("name", "tag", "exp_root_dir", "use_timestamp", "timestamp")


@dataclass
class ResolvedStage:
    """One stage's spec and its fully resolved config (``takes`` key still empty)."""

    spec: StageSpec
    resolved: ResolvedConfig


def split_overrides(
    overrides: list[str], stages: tuple[StageSpec, ...]
) -> tuple[list[str], dict[str, list[str]]]:
    """``(shared overrides, {stage name: its overrides without the prefix})``."""
    names = {s.name for s in stages}
    shared: list[str] = []
    per_stage: dict[str, list[str]] = {s.name: [] for s in stages}
    for token in overrides:
        key, _value = parse_override(token)
        head, dot, _rest = key.partition(".")
        if dot and head in names:
            per_stage[head].append(token[len(head) + 1 :])
        else:
            shared.append(token)
    return shared, per_stage


def flat_keys(data: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a nested mapping (leaves and the mappings above them)."""
    keys: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            keys.append(dotted)
            keys.extend(flat_keys(value, dotted))
    return keys


def _has(data: dict[str, Any], key: str) -> bool:
    try:
        get_dotted(data, key)
    except KeyError:
        return False
    return True


def _stage_error(stage: StageSpec, exc: StudioError) -> ConfigError:
    return ConfigError(f"Stage {stage.name!r} (method {stage.method}): {exc}")


def _resolve_stage(
    stage: StageSpec,
    overrides: list[str],
    prompt: Optional[str],
    model: Optional[str],
    allow_missing: bool = False,
) -> ResolvedConfig:
    raw = apply_user_overrides(load_preset(method_registration(stage.method)), overrides)
    try:
        apply_shorthands(raw, prompt, model)
        if stage.takes:
            set_dotted(raw, stage.takes, None)  # filled in once the previous stage's dir exists
        return resolve(raw, allow_missing)
    except StudioError as exc:
        raise _stage_error(stage, exc) from None


def resolve_stages(
    spec: MethodSpec,
    overrides: list[str],
    prompt: Optional[str],
    model: Optional[str],
    allow_missing: bool = False,
) -> list[ResolvedStage]:
    """Resolve every stage of pipeline ``spec`` (see the module doc for the override rules).

    ``allow_missing``: see :func:`studio.config.resolve.resolve` (for showing configs only)."""
    stage_methods = [(f"{s.name}.", method_registration(s.method).spec) for s in spec.stages]
    overrides = expand_method_shorthands(overrides, stage_methods)
    shared, per_stage = split_overrides(overrides, spec.stages)
    bare = {
        stage.name: _resolve_stage(stage, per_stage[stage.name], prompt, model, allow_missing)
        for stage in spec.stages
    }
    applies: dict[str, list[str]] = {stage.name: [] for stage in spec.stages}
    for token in shared:
        key, _value = parse_override(token)
        matched = [s.name for s in spec.stages if _has(bare[s.name].parsed, key)]
        if not matched:
            raise ConfigError(_unmatched_message(key, spec, bare))
        for name in matched:
            applies[name].append(token)
    stages = []
    for stage in spec.stages:
        tokens = applies[stage.name] + per_stage[stage.name]
        resolved = (
            _resolve_stage(stage, tokens, prompt, model)
            if applies[stage.name]
            else bare[stage.name]
        )
        stages.append(ResolvedStage(stage, resolved))
    return stages


def _unmatched_message(key: str, spec: MethodSpec, bare: dict[str, ResolvedConfig]) -> str:
    known = [
        f"{stage.name}.{k}" for stage in spec.stages for k in flat_keys(bare[stage.name].parsed)
    ]
    unprefixed = sorted({k.split(".", 1)[1] for k in known})
    close = difflib.get_close_matches(key, unprefixed, n=1, cutoff=0.6)
    close_prefixed = difflib.get_close_matches(
        key, [k.split(".", 1)[1] for k in known], n=1, cutoff=0.0
    )
    hint = f" Did you mean {close[0]!r}?" if close else ""
    names = ", ".join(s.name for s in spec.stages)
    example = close_prefixed[0] if close_prefixed else "trainer.max_steps"
    return (
        f"Invalid configuration: {key} matches no stage's config of pipeline {spec.name!r} "
        f"(stages {names}).{hint} A key only one stage has takes the stage's name as prefix, "
        f"e.g. {spec.stages[-1].name}.{example}=...; a shared key (no prefix) is set in every "
        "stage that has it."
    )


def _root_values(shared: list[str], first: dict[str, Any], spec: MethodSpec) -> dict[str, Any]:
    """``name``/``tag``/... of the pipeline's own directory: the first stage's, except that the
    name is the pipeline's unless ``name=`` was given."""
    values = {key: first.get(key) for key in ROOT_KEYS}
    given = {parse_override(t)[0] for t in shared}
    if "name" not in given:
        values["name"] = spec.name
    return values


def create(
    spec: MethodSpec,
    overrides: list[str],
    prompt: Optional[str],
    model: Optional[str],
    argv: Optional[list[str]] = None,
    gpus: Optional[list[str]] = None,
    nproc: Optional[int] = None,
    overwrite: bool = False,
) -> PipelineDir:
    """Resolve and check every stage (:mod:`studio.preflight`), then create the pipeline's run
    directory with one per stage."""
    from studio.preflight import check_before_creating

    stages = resolve_stages(spec, overrides, prompt, model)
    for stage in stages:
        try:
            check_before_creating(
                stage.resolved.parsed, stage.resolved.method.spec.model_keys, gpus, nproc
            )
        except StudioError as exc:
            raise _stage_error(stage.spec, exc) from None
    shared, _ = split_overrides(overrides, spec.stages)
    root_values = _root_values(shared, stages[0].resolved.parsed, spec)
    root = claim_root(root_values, overwrite)
    rows = []
    previous: Optional[Path] = None
    for number, stage in enumerate(stages, start=1):
        folder = Path(STAGES_DIR) / stage_dir_name(number, stage.spec.name)
        parsed = dict(stage.resolved.parsed)
        parsed.update({k: root_values[k] for k in ("name", "tag", "timestamp")})
        if stage.spec.takes and previous is not None:
            set_dotted(parsed, stage.spec.takes, str(previous.resolve()))
        create_at(root / folder, parsed, stage.resolved.raw)
        rows.append({"name": stage.spec.name, "method": stage.spec.method, "dir": str(folder)})
        previous = root / folder
    write_text_atomic(
        root / PIPELINE_FILE,
        dump_yaml(
            {
                "method": spec.name,
                "stages": rows,
                "overrides": list(overrides),
                "prompt": prompt,
                "model": model,
            }
        ),
    )
    pipeline = PipelineDir(root)
    pipeline.record_command(argv)
    return pipeline


def run(
    pipeline: PipelineDir,
    gpus: Optional[list[str]],
    nproc: Optional[int],
    say: Any = None,
    fresh: bool = False,
) -> int:
    """Train every unfinished stage in order (resuming one that has a checkpoint), holding the
    pipeline's lock. ``fresh``: the pipeline was created by this command, so a start that fails
    before anything was trained removes it."""
    from studio.runlock import RunLock

    try:
        with RunLock(pipeline.root, say=say):
            code = _run_stages(pipeline, gpus, nproc, say)
    except BaseException:
        if fresh and remove_untrained(pipeline.root) and say is not None:
            say(f"Nothing was trained; removed {pipeline.root}.")
        raise
    if code not in (0, 130, 143) and fresh and remove_untrained(pipeline.root):
        if say is not None:
            say(f"Nothing was trained; removed {pipeline.root}.")
    return code


def _run_stages(
    pipeline: PipelineDir, gpus: Optional[list[str]], nproc: Optional[int], say: Any
) -> int:
    from studio.runner import start

    stages = pipeline.stages()
    if all(stage.run.is_finished() for stage in stages):
        if say is not None:
            say(
                f"Every stage of {pipeline.root} has finished ({', '.join(s.name for s in stages)})."
                f" Render again with `studio test {pipeline.root}`; to train the last stage "
                f"longer: studio resume {pipeline.root} {stages[-1].name}.trainer.max_steps=N."
            )
        return 0
    for stage in stages:
        if stage.run.is_finished():
            continue
        label = f"[{stage.number}/{len(stages)} {stage.name}]"
        resume = stage.run.newest_checkpoint() is not None
        if say is not None:
            verb = "Resuming" if resume else "Starting"
            say(f"{label} {verb} stage {stage.name!r} ({stage.method}) in {stage.run.root}")
        code = start(stage.run, "fit", resume, gpus, nproc, label)
        if code != 0:
            return code
        if not stage.run.is_finished():  # stopped early (Ctrl+C): later stages wait
            if say is not None:
                say(
                    f"{label} stopped before its last step; continue with `studio resume "
                    f"{pipeline.root}`."
                )
            return 0
    return 0


def _reopen_if_longer(run: Any, tokens: list[str], reconfigure_run: Any) -> None:
    """Apply ``tokens`` to a finished run; one that now trains past its last step is reopened."""
    reconfigure_run(run, tokens)
    if int(run.load_parsed()["trainer"]["max_steps"]) > run.finished_step():
        run.finished_marker.unlink(missing_ok=True)


def reconfigure(pipeline: PipelineDir, overrides: list[str]) -> None:
    """Apply ``studio resume PIPELINE key=value ...`` to the stages that have not finished: a
    stage-prefixed key to its stage, a shared key to every unfinished stage that has it."""
    from studio.runner import reconfigure as reconfigure_run

    if not overrides:
        return
    stages = pipeline.stages()
    specs = tuple(StageSpec(name=s.name, method=s.method) for s in stages)
    shared, per_stage = split_overrides(overrides, specs)
    open_stages = [s for s in stages if not s.run.is_finished()]
    for token in shared:
        key, _value = parse_override(token)
        if not any(_has(s.run.load_parsed(), key) for s in open_stages):
            raise ConfigError(
                f"{key} matches no unfinished stage's config in {pipeline.root}; prefix it with "
                f"a stage name ({', '.join(s.name for s in open_stages) or 'none left'})."
            )
    for stage in stages:
        tokens = per_stage[stage.name]
        if stage.run.is_finished():
            if tokens and stage is not stages[-1]:
                raise ConfigError(
                    f"Stage {stage.name!r} of {pipeline.root} has finished and later stages "
                    f"started from it; its overrides ({', '.join(tokens)}) would change nothing. "
                    "Drop them (only the last stage can be trained longer)."
                )
            if tokens:
                _reopen_if_longer(stage.run, tokens, reconfigure_run)
            continue
        parsed = stage.run.load_parsed()
        mine = [t for t in shared if _has(parsed, parse_override(t)[0])] + tokens
        try:
            reconfigure_run(stage.run, mine)
        except StudioError as exc:
            raise ConfigError(f"Stage {stage.name!r}: {exc}") from None
