"""Presets that ``extends:`` another method's preset and list only what differs."""

from __future__ import annotations

import pytest

from studio.config.resolve import load_preset, merge_preset, method_registration
from studio.errors import ConfigError, PluginError
from studio.hookspecs import hookimpl

PRESETS = "tests.core.config:presets"
SYSTEM = "studio.systems.base:BaseSystem"


class PresetPlugin:
    @hookimpl
    def studio_register_methods(self, register):
        for name, preset in [
            ("base-method", "base"),
            ("child-method", "child"),
            ("grandchild-method", "grandchild"),
            ("other-background", "other-background"),
            ("cycle-a", "cycle-a"),
            ("cycle-b", "cycle-b"),
            ("unknown-parent", "unknown-parent"),
            ("extends-pipeline", "extends-pipeline"),
        ]:
            register(name, system=SYSTEM, preset=f"{PRESETS}/{preset}.yaml")
        register("a-pipeline", stages=[{"name": "one", "method": "base-method"}])


@pytest.fixture
def presets(studio_plugin):
    studio_plugin(PresetPlugin(), name="presets")


def preset(name: str) -> dict:
    return load_preset(method_registration(name))


def test_a_child_lists_only_what_differs(presets):
    child = preset("child-method")
    assert child["method"] == "child-method" and child["name"] == "child"
    assert "extends" not in child
    assert child["data"] == {"batch_size": 2, "height": 16, "width": 8}
    assert child["system"]["loss"] == {"lambda_fit": 2.0}
    assert child["system"]["optimizer"] == {
        "name": "Adam",
        "args": {"lr": 0.02, "betas": [0.9, 0.99]},
    }
    assert child["system"]["prompt"] == "???"
    assert child["trainer"] == {"max_steps": 10}


def test_extends_chains(presets):
    grandchild = preset("grandchild-method")
    assert grandchild["method"] == "grandchild-method" and grandchild["name"] == "grandchild"
    assert grandchild["data"]["height"] == 16  # from child
    assert grandchild["system"]["background"] == {"hidden": 4}  # from base
    assert grandchild["trainer"] == {"max_steps": 5}


def test_another_component_drops_the_parents_block(presets):
    other = preset("other-background")
    assert other["system"]["background_type"] == "other-field"
    assert other["system"]["background"] == {"size": 3}  # not merged with base's {hidden: 4}


def test_merge_preset_keeps_a_block_when_the_type_is_unchanged():
    parent = {"geometry_type": "a", "geometry": {"x": 1, "y": 2}}
    assert merge_preset(parent, {"geometry_type": "a", "geometry": {"y": 3}}) == {
        "geometry_type": "a",
        "geometry": {"x": 1, "y": 3},
    }
    assert merge_preset(parent, {"geometry": {"y": 3}})["geometry"] == {"x": 1, "y": 3}


def test_another_network_replaces_the_parents_mapping():
    parent = {"encoding": {"otype": "ProgressiveBandHashGrid", "n_levels": 16, "start_level": 8}}
    child = {"encoding": {"otype": "HashGrid", "n_levels": 8}}
    assert merge_preset(parent, child) == {"encoding": {"otype": "HashGrid", "n_levels": 8}}
    # the same network: merged key by key
    same = {"encoding": {"otype": "ProgressiveBandHashGrid", "n_levels": 4}}
    assert merge_preset(parent, same)["encoding"] == {
        "otype": "ProgressiveBandHashGrid",
        "n_levels": 4,
        "start_level": 8,
    }


@pytest.mark.parametrize(
    ("name", "error", "expected"),
    [
        ("cycle-a", PluginError, "cycle: cycle-a -> cycle-b -> cycle-a"),
        ("unknown-parent", PluginError, "extends 'no-such-method'"),
        ("extends-pipeline", ConfigError, "'a-pipeline', which is a pipeline"),
    ],
)
def test_bad_extends_are_refused(presets, name, error, expected):
    with pytest.raises(error) as info:
        preset(name)
    assert expected in str(info.value) and "\n" not in str(info.value)
