"""Latent-NeRF's and Sketch-Shape's presets resolve with the reference's settings, and their
pipelines hand the latent stage's weights to the refinement."""

from __future__ import annotations

import pytest
import torch

from studio.config.convert import structure
from studio.config.experiment import OptimizerConfig
from studio.config.resolve import load_experiment, method_spec
from studio.errors import ConfigError
from studio.pipeline import resolve_stages
from studio.training.optim import build_optimizer, build_scheduler
from studio_latentnerf.plugin import PIPELINES
from tests.core.training.test_optim import learning_rates

STAGES = {
    "latentnerf": [],
    "latentnerf-refine": ["system.weights="],
    "sketchshape": ["system.guide_shape=teddy"],
    "sketchshape-refine": ["system.weights=", "system.guide_shape=chair"],
    "latentnerf-primitives": [],
    "latentnerf-refine-primitives": ["system.weights="],
    "sketchshape-primitives": ["guide_shape=cube"],
    "sketchshape-refine-primitives": ["system.weights=", "guide_shape=sphere"],
}


@pytest.mark.parametrize("method", list(STAGES))
def test_every_stage_resolves(method: str) -> None:
    parsed = load_experiment(method, STAGES[method], prompt="a red cube").parsed
    system = parsed["system"]
    assert system["geometry"]["n_feature_dims"] == 4
    refinement = "refine" in method
    assert system["refinement"] is refinement
    assert system["material_type"] == ("sd-latent-adapter" if refinement else "no-material")
    if refinement:
        assert system["weights_ignore_modules"] == ["material", "background"]
        assert system["background"]["n_output_dims"] == 3
    if method.startswith("sketchshape"):
        assert system["loss"]["lambda_shape"] == 1.0 and system["loss"]["lambda_sparsity"] == 0.0


@pytest.mark.parametrize(
    ("method", "overrides", "warm_up"),
    [("latentnerf", [], 100), ("latentnerf-refine-primitives", ["system.weights="], 10)],
)
def test_the_learning_rate_warms_up_then_decays_to_a_tenth_at_the_end(
    method: str, overrides: list[str], warm_up: int
) -> None:
    parsed = load_experiment(method, overrides, prompt="a red cube").parsed
    max_steps = parsed["trainer"]["max_steps"]
    config = structure(parsed["system"]["optimizer"], OptimizerConfig, "system.optimizer")
    optimizer = build_optimizer(torch.nn.Linear(2, 2), config)
    scheduler = build_scheduler(optimizer, parsed["system"]["scheduler"], max_steps=max_steps)
    lrs = learning_rates(optimizer, scheduler, max_steps)
    assert lrs[0] == pytest.approx(0.001) and lrs[warm_up] == pytest.approx(0.01)
    # gamma = 0.1 ** (1 / (max_steps - warm_up)): 9900 steps for latentnerf
    assert lrs[-1] == pytest.approx(0.001, rel=1e-5)


def test_pipelines_hand_the_latent_weights_to_the_refinement() -> None:
    for name in PIPELINES:
        stages = method_spec(name).stages
        assert [s.name for s in stages] == ["latent", "refine"]
        assert stages[1].takes == "system.weights"


def test_sketchshape_needs_its_guide() -> None:
    with pytest.raises(ConfigError, match="guide_shape"):
        load_experiment("sketchshape", [], prompt="a red cube")


def test_the_guide_shape_shorthand_sets_both_stages_guide() -> None:
    spec = method_spec("sketchshape-primitives-full")
    stages = resolve_stages(
        spec, ["guide_shape=cube", "refine.guide_shape=torus"], "a red cube", None
    )
    guides = {s.spec.name: s.resolved.parsed["system"]["guide_shape"] for s in stages}
    assert guides == {"latent": "cube", "refine": "torus"}  # a stage's own override wins
