"""A method's own ``NAME=value`` shorthands (``MethodSpec.shorthands``) become its dotted keys."""

from __future__ import annotations

from studio.config.resolve import expand_method_shorthands
from studio.specs import MethodSpec

SHAPED = MethodSpec(name="shaped", system="pkg.s:S", shorthands={"shape": "system.shape"})
PLAIN = MethodSpec(name="plain", system="pkg.s:S")


def test_a_single_method_s_shorthand_sets_its_key_with_the_text_unchanged() -> None:
    tokens = ["shape=a cube.obj", "seed=1", "shapes=x", "shape"]
    assert expand_method_shorthands(tokens, [("", SHAPED)]) == [
        "system.shape=a cube.obj",
        "seed=1",
        "shapes=x",
        "shape",
    ]


def test_a_method_without_shorthands_leaves_the_token_for_the_usual_checks() -> None:
    assert expand_method_shorthands(["shape=cube"], [("", PLAIN)]) == ["shape=cube"]


def test_in_a_pipeline_each_stage_that_declares_it_gets_its_own_override() -> None:
    stages = [("latent.", SHAPED), ("other.", PLAIN), ("refine.", SHAPED)]
    assert expand_method_shorthands(["shape=teddy", "seed=2"], stages) == [
        "latent.system.shape=teddy",
        "refine.system.shape=teddy",
        "seed=2",
    ]


def test_a_stage_prefixed_shorthand_sets_that_stage_alone() -> None:
    stages = [("latent.", SHAPED), ("refine.", SHAPED)]
    assert expand_method_shorthands(["refine.shape=torus", "latent.seed=1"], stages) == [
        "refine.system.shape=torus",
        "latent.seed=1",
    ]
