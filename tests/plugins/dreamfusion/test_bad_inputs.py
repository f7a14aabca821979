"""Bad input to DreamFusion's methods is refused before anything is created (the reliability
issue's table, continued from tests/core/test_bad_inputs.py): one paragraph, no traceback, no
new file."""

from __future__ import annotations

import pytest

from tests.core.test_bad_inputs import refuse

PRIM = ["run", "dreamfusion-primitives", "prompt=a red cube"]


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    return tmp_path


CASES = [
    # values
    ([*PRIM, "system.guidance.guidance_scale=.inf"], ["system.guidance.guidance_scale", "finite"]),
    ([*PRIM, "system.guidance.guidance_scale=.nan"], ["system.guidance.guidance_scale", "finite"]),
    ([*PRIM, "system.renderer.num_samples_per_ray=0"], ["num_samples_per_ray", "at least 1"]),
    ([*PRIM, "system.guidance.max_step_percent=1.5"], ["max_step_percent=1.5", "[0, 1]"]),
    ([*PRIM, "system.guidance.min_step_percent=-0.1"], ["min_step_percent=-0.1", "[0, 1]"]),
    (
        [*PRIM, "system.guidance.min_step_percent=0.6", "system.guidance.max_step_percent=0.5"],
        ["max_step_percent=0.5", "falls below min_step_percent"],
    ),
    (
        [*PRIM, "system.guidance.max_step_percent=[0, 0.98, 0.01, 100]"],
        ["max_step_percent", "falls below min_step_percent", "at step 100"],
    ),
    ([*PRIM, "system.guidance.weighting_strategy=sd"], ["weighting_strategy='sd'", "'sds'"]),
    # typos, free-form sections included
    ([*PRIM, "system.loss.lambda_sdss=1"], ["system.loss.lambda_sdss", "lambda_sds"]),
    ([*PRIM, "system.loss.lambda_orientt=1"], ["system.loss.lambda_orientt", "lambda_orient"]),
    ([*PRIM, "system.loss.lambda_opacity=1"], ["system.loss.lambda_opacity", "lambda_opaque"]),
    (
        [*PRIM, "system.geometry.pos_encoding_config.n_level=4"],
        ["pos_encoding_config.n_level", "n_levels"],
    ),
    (
        [*PRIM, "system.geometry.mlp_network_config.n_neuron=4"],
        ["mlp_network_config.n_neuron", "n_neurons"],
    ),
    ([*PRIM, "system.geometry.pos_encoding_config.otype=HashGird"], ["otype", "HashGrid"]),
    ([*PRIM, "system.geometry.density_bias=blob_magic"], ["density_bias"]),
    ([*PRIM, "system.guidance.guidance_scal=10"], ["guidance_scal", "guidance_scale"]),
    ([*PRIM, "system.material_type=diffuse-with-pointlight"], ["diffuse-with-point-light"]),
    # models that cannot be had, and prompts the embedded model cannot follow
    ([*PRIM, "model=owner/no-such-model"], ["owner/no-such-model", "not available"]),
    (
        [*PRIM, "system.guidance.pretrained_model_name_or_path=/nonexistent/sd"],
        ["system.guidance.pretrained_model_name_or_path", "/nonexistent/sd"],
    ),
    (["run", "dreamfusion-primitives", "prompt=a purple dragon"], ["primitives-sd", "prompt"]),
    (["run", "dreamfusion-sd", "prompt=a cat"], ["stabilityai/stable-diffusion-2-1-base"]),
    (["run", "dreamfusion-primitives", "prompt=a red cube", "model="], ["names no model"]),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_bad_input_is_one_paragraph_and_creates_nothing(here, args, expected):
    refuse(args, *expected, cwd=here)
