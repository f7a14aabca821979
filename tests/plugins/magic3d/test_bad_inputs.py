"""Bad input to Magic3D's methods and pipelines is refused before anything is created: one
paragraph, no traceback, no new file (the reliability issue's rules, on this method)."""

from __future__ import annotations

import pytest

from tests.core.test_bad_inputs import refuse
from tests.plugins.dreamfusion.test_bad_inputs import here  # noqa: F401 - fixture

PIPE = ["run", "magic3d-primitives", "prompt=a red cube"]
REFINE = ["run", "magic3d-refine-primitives", "prompt=a red cube"]


CASES = [
    # the refine stage weighs mesh regularisers, not the NeRF's
    (
        [*PIPE, "refine.system.loss.lambda_orient=1"],
        ["system.loss.lambda_orient", "lambda_normal_consistency"],
    ),
    (
        [*PIPE, "refine.system.loss.lambda_normal_consistensy=1"],
        ["lambda_normal_consistensy", "lambda_normal_consistency"],
    ),
    (
        [*PIPE, "coarse.system.loss.lambda_normal_consistency=1"],
        ["system.loss.lambda_normal_consistency"],
    ),
    ([*PIPE, "refine.system.geometry.isosurface_resolution=0"], ["isosurface_resolution"]),
    ([*PIPE, "refine.trainer.max_steps=0"], ["trainer.max_steps"]),
    ([*PIPE, "refine.system.renderer.backend=opengl"], ["backend", "opengl"]),
    ([*PIPE, "refin.trainer.max_steps=3"], ["refin.trainer.max_steps", "refine"]),
    # a refine stage alone needs a coarse run to convert from
    (REFINE, ["system.geometry_convert_from"]),
    ([*REFINE, "system.geometry_convert_from=/nonexistent/run"], ["/nonexistent/run"]),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_bad_input_is_one_paragraph_and_creates_nothing(here, args, expected):  # noqa: F811
    refuse(args, *expected, cwd=here)
