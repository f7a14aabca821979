"""Bad input to the SJC methods is refused before anything is created: one paragraph, no
traceback, no new file (the reliability issue's rules, on this method)."""

from __future__ import annotations

import pytest

from tests.core.test_bad_inputs import refuse
from tests.plugins.dreamfusion.test_bad_inputs import here  # noqa: F401 - fixture

RUN = ["run", "sjc-primitives", "prompt=a red cube"]

CASES = [
    # SJC weighs its guidance, emptiness and depth: DreamFusion's regularisers are not its terms
    ([*RUN, "system.loss.lambda_orient=1"], ["system.loss.lambda_orient", "lambda_emptiness"]),
    ([*RUN, "system.loss.lambda_emptyness=1"], ["lambda_emptyness", "lambda_emptiness"]),
    # emptiness_scale and center_ratio are system keys, not loss weights
    ([*RUN, "system.loss.emptiness_scale=5"], ["system.loss.emptiness_scale", "lambda_"]),
    ([*RUN, "system.emptiness_scale=-1"], ["system.emptiness_scale", "-1"]),
    ([*RUN, "system.center_ratio=1.5"], ["system.center_ratio", "1.5"]),
    ([*RUN, "system.renderer.torch_sampling=grid"], ["torch_sampling", "grid"]),
    ([*RUN, "system.guidance.var_red=maybe"], ["var_red", "maybe"]),
    ([*RUN, "system.guidance.min_step_percent=1.5"], ["min_step_percent", "1.5"]),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0][3:]) for c in CASES])
def test_bad_input_is_one_paragraph_and_creates_nothing(here, args, expected):  # noqa: F811
    refuse(args, *expected, cwd=here)
