"""`studio run` / `studio eval` on the primitives model print our lines only: no third-party notices.

A one-step DreamFusion run on the shipped SD-form model (a fresh embedding cache, so the CLIP text
encoder is loaded too), then `studio eval` with a tiny CLIP model (the CLIP evaluator's loading)
and the primitives classifier, each in a subprocess like a user's shell. The libraries' own
loading bars and notices (studio_dreamfusion.quiet) must not reach stderr; our progress bar with
its ETA must.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import studio_env
from tests.plugins.dreamfusion.tiny_models import make_tiny_clip

#: Lines on stderr that are not ours, with where each came from.
THIRD_PARTY = {
    "transformers' torchvision fallback notice": r"requires torchvision",
    "bitsandbytes' CPU kernel-hub notice": r"gemm_4bit_forward|kernels-community",
    "diffusers' loading bar": r"Loading pipeline components",
    "transformers' loading bar": r"Loading weights",
    "transformers' saving bar": r"Writing model shards",
    "a transformers log line": r"^\[transformers\]",
    "a Python warning from an installed library": r"site-packages/.*Warning",
}


def studio(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "studio", *args],
        cwd=cwd,
        env=studio_env(**env),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def third_party_lines(stderr: str) -> list[str]:
    # progress bars redraw with "\r": every redraw is a line of its own here
    lines = [part for line in stderr.splitlines() for part in line.split("\r")]
    return [
        f"{what}: {line}"
        for line in lines
        for what, pattern in THIRD_PARTY.items()
        if re.search(pattern, line)
    ]


@pytest.mark.slow
def test_run_and_eval_on_the_primitives_model_print_no_third_party_notices(tmp_path: Path) -> None:
    clip = make_tiny_clip(tmp_path / "clip")
    env = {"STUDIO_CACHE_DIR": str(tmp_path / "cache"), "STUDIO_CLIP_MODEL": str(clip)}
    run = studio(
        "run",
        "dreamfusion-primitives",
        "prompt=a red cube",
        f"exp_root_dir={tmp_path / 'out'}",
        "trainer.max_steps=1",
        "data.n_test_views=1",
        cwd=tmp_path,
        **env,
    )
    (run_dir,) = (tmp_path / "out" / "dreamfusion-primitives").iterdir()
    evaluated = studio("eval", str(run_dir), cwd=tmp_path, **env)

    assert third_party_lines(run.stderr + evaluated.stderr) == []
    # our own output is still there: the training bar with its ETA, and the results
    assert re.search(r"train: +100%.*\| 1/1 \[\d\d:\d\d<\d\d:\d\d", run.stderr), run.stderr
    assert "Test video:" in run.stdout + run.stderr
    assert "primitives-r-precision: applicable = True" in evaluated.stdout
    assert "clip-r-precision: applicable = True" in evaluated.stdout
