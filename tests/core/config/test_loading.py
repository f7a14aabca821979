from __future__ import annotations

import pytest

from studio.config.loading import (
    apply_overrides,
    deep_merge,
    missing_paths,
    parse_override,
    resolve_references,
)
from studio.errors import ConfigError


@pytest.mark.parametrize(
    ("token", "key", "value"),
    [
        ("trainer.max_steps=20", "trainer.max_steps", 20),
        ("system.guidance.guidance_scale=7.5", "system.guidance.guidance_scale", 7.5),
        ("lr=1e-3", "lr", 1e-3),
        ("lr=5.", "lr", 5.0),
        ("prompt=a red cube", "prompt", "a red cube"),
        ('prompt="a cat, 4k"', "prompt", "a cat, 4k"),
        (
            "system.loss.lambda_orient=[0, 10., 1000., 5000]",
            "system.loss.lambda_orient",
            [0, 10.0, 1000.0, 5000],
        ),
        ("flag=true", "flag", True),
        ("tag=", "tag", None),
    ],
)
def test_parse_override(token, key, value):
    assert parse_override(token) == (key, value)


@pytest.mark.parametrize("token", ["no_equals", "=5", "a..b=1", "1abc=2"])
def test_bad_override_syntax(token):
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        parse_override(token)


def test_overrides_create_nested_keys_and_refuse_to_replace_scalars():
    data = apply_overrides({"a": {"b": 1}}, ["a.c.d=2"])
    assert data == {"a": {"b": 1, "c": {"d": 2}}}
    with pytest.raises(ConfigError, match=r"a\.b holds the value 1"):
        apply_overrides({"a": {"b": 1}}, ["a.b.c=2"])


def test_deep_merge_merges_mappings_and_replaces_lists():
    merged = deep_merge({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}, "c": 2})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}


def test_references():
    data = {
        "trainer": {"max_steps": 300},
        "ckpt": {"every": "${trainer.max_steps}"},
        "label": "steps-${trainer.max_steps}",
    }
    resolved = resolve_references(data)
    assert resolved["ckpt"]["every"] == 300
    assert resolved["label"] == "steps-300"
    with pytest.raises(ConfigError, match=r"no key 'trainer\.nope'"):
        resolve_references({"a": "${trainer.nope}", "trainer": {}})
    with pytest.raises(ConfigError, match="cycle"):
        resolve_references({"a": "${b}", "b": "${a}"})


def test_missing_paths():
    assert missing_paths({"a": {"prompt": "???", "x": 1}, "b": ["???"]}) == ["a.prompt", "b[0]"]
