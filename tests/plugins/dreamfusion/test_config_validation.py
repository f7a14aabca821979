"""Encoding and MLP sub-configs are validated when a run's config is resolved, before any run
directory exists: a typo, an unknown ``otype`` or a value ``build_encoding``/``build_mlp`` would
refuse is a ``ConfigError`` naming the dotted key."""

from __future__ import annotations

import pytest

from studio.config.convert import structure
from studio.config.resolve import load_experiment
from studio.errors import ConfigError
from studio_dreamfusion.backgrounds import NeuralEnvironmentMap, SolidColor
from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
from studio_dreamfusion.materials import DiffuseWithPointLight, NeuralRadiance, NoMaterial
from studio_dreamfusion.networks.encodings import (
    FrequencyConfig,
    HashGridConfig,
    ProgressiveBandHashGridConfig,
    SphericalHarmonicsConfig,
    build_encoding,
    encoding_config_class,
    find_encoding_config_class,
    validate_encoding_config,
)
from studio_dreamfusion.networks.mlp import MLPConfig, find_mlp_config_class, mlp_config_class


def resolve_error(method: str, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_experiment(method, list(overrides), prompt="a cat")
    return str(info.value)


# -- typos and unknown otypes at resolution time --------------------------------------------------


def test_encoding_key_typo_is_refused_with_a_suggestion() -> None:
    message = resolve_error("dreamfusion-sd", "system.geometry.pos_encoding_config.n_level=8")
    assert "system.geometry.pos_encoding_config.n_level" in message
    assert "system.geometry.pos_encoding_config.n_levels" in message  # did you mean ...?


@pytest.mark.parametrize("method", ["dreamfusion-sd", "dreamfusion-if"])
def test_mlp_key_typo_is_refused_with_a_suggestion(method: str) -> None:
    message = resolve_error(
        method, "system.geometry.mlp_network_config={otype: VanillaMLP, n_neuron: 64}"
    )
    assert "system.geometry.mlp_network_config.n_neuron" in message
    assert "system.geometry.mlp_network_config.n_neurons" in message


def test_background_encoding_typo_is_refused() -> None:
    message = resolve_error(
        "dreamfusion-sd",
        "system.background.dir_encoding_config={otype: SphericalHarmonics, degre: 3}",
    )
    assert "system.background.dir_encoding_config.degre" in message
    assert "system.background.dir_encoding_config.degree" in message


def test_unknown_encoding_otype_is_refused() -> None:
    message = resolve_error("dreamfusion-sd", "system.geometry.pos_encoding_config.otype=HashGird")
    assert "system.geometry.pos_encoding_config.otype" in message
    assert "unknown encoding 'HashGird'" in message
    assert "did you mean 'HashGrid'" in message


def test_unknown_mlp_otype_is_refused() -> None:
    message = resolve_error("dreamfusion-sd", "system.background.mlp_network_config.otype=FooMLP")
    assert "system.background.mlp_network_config.otype" in message
    assert "unknown network 'FooMLP'" in message


def test_missing_otype_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        validate_encoding_config({"n_levels": 8}, "system.geometry.pos_encoding_config", 3)
    message = str(info.value)
    assert "system.geometry.pos_encoding_config.otype: a required value is missing" in message


def test_a_partial_mapping_changes_the_default_keys_only() -> None:
    """``pos_encoding_config={n_levels: 8}`` (no otype) keeps the rest of the default grid."""
    resolved = load_experiment(
        "dreamfusion-sd", ["system.geometry.mlp_network_config={n_neurons: 32}"], prompt="a cat"
    )
    mlp = resolved.parsed["system"]["geometry"]["mlp_network_config"]
    assert mlp["n_neurons"] == 32 and mlp["otype"] == "VanillaMLP" and mlp["n_hidden_layers"] == 1


# -- the value checks build_encoding / build_mlp make, at resolution time -------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("system.geometry.pos_encoding_config.n_levels=0", "pos_encoding_config.n_levels"),
        (
            "system.geometry.pos_encoding_config.n_features_per_level=3",
            "pos_encoding_config.n_features_per_level",
        ),
        ("system.geometry.pos_encoding_config.update_steps=0", "pos_encoding_config.update_steps"),
        (
            "system.background.dir_encoding_config={otype: SphericalHarmonics, degree: 9}",
            "dir_encoding_config.degree",
        ),
        (
            "system.background.mlp_network_config={otype: VanillaMLP, activation: Relu2}",
            "mlp_network_config.activation",
        ),
        (
            "system.background.mlp_network_config={otype: VanillaMLP, backend: tinycudann}",
            "mlp_network_config.backend",
        ),
        (
            "system.geometry.mlp_network_config={otype: VanillaMLP, n_neurons: 0}",
            "mlp_network_config.n_neurons",
        ),
    ],
)
def test_value_checks_of_the_builders_run_at_resolution(override: str, key: str) -> None:
    assert key in resolve_error("dreamfusion-sd", override)


def test_spherical_harmonics_needs_three_input_dims() -> None:
    message = resolve_error(
        "dreamfusion-sd",
        "system.geometry.n_input_dims=2",
        "system.geometry.pos_encoding_config={otype: SphericalHarmonics}",
    )
    assert "system.geometry.pos_encoding_config" in message
    assert "3D directions" in message


def test_optional_mlp_of_no_material_is_checked_when_set() -> None:
    message = resolve_error(
        "dreamfusion-sd",
        "system.material_type=no-material",
        "system.material={mlp_network_config: {otype: VanillaMLP, n_hidden_layer: 1}}",
    )
    assert "system.material.mlp_network_config.n_hidden_layer" in message
    assert "system.material.mlp_network_config.n_hidden_layers" in message


# -- valid configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dreamfusion-sd", "dreamfusion-if"])
def test_presets_resolve(method: str) -> None:
    resolved = load_experiment(method, [], prompt="a cat")
    geometry = resolved.parsed["system"]["geometry"]
    assert geometry["pos_encoding_config"]["otype"] == "ProgressiveBandHashGrid"


def test_valid_overrides_resolve_and_otype_is_case_insensitive() -> None:
    resolved = load_experiment(
        "dreamfusion-sd",
        [
            "system.geometry.pos_encoding_config.n_levels=8",
            "system.geometry.pos_encoding_config.otype=progressivebandhashgrid",
            "system.geometry.mlp_network_config={otype: vanillamlp, n_neurons: 32}",
            "system.background.dir_encoding_config={otype: Frequency, n_frequencies: 4}",
        ],
        prompt="a cat",
    )
    geometry = resolved.parsed["system"]["geometry"]
    assert geometry["pos_encoding_config"]["n_levels"] == 8
    mlp = geometry["mlp_network_config"]  # the default network with these two keys changed
    assert mlp["otype"] == "vanillamlp" and mlp["n_neurons"] == 32 and mlp["activation"] == "ReLU"


# -- sub_configs ----------------------------------------------------------------------------------


def component_config(component: type, data: dict | None = None):
    return structure(data or {}, component.Config, "system.component")


def test_sub_configs_of_the_components() -> None:
    assert ImplicitVolume.sub_configs(component_config(ImplicitVolume)) == {
        "pos_encoding_config": HashGridConfig,
        "mlp_network_config": MLPConfig,
    }
    progressive = component_config(
        ImplicitVolume, {"pos_encoding_config": {"otype": "ProgressiveBandHashGrid"}}
    )
    assert ImplicitVolume.sub_configs(progressive)["pos_encoding_config"] is (
        ProgressiveBandHashGridConfig
    )
    expected = {"dir_encoding_config": SphericalHarmonicsConfig, "mlp_network_config": MLPConfig}
    assert NeuralEnvironmentMap.sub_configs(component_config(NeuralEnvironmentMap)) == expected
    assert NeuralRadiance.sub_configs(component_config(NeuralRadiance)) == expected
    assert NoMaterial.sub_configs(component_config(NoMaterial)) == {}
    with_mlp = component_config(NoMaterial, {"mlp_network_config": {"otype": "VanillaMLP"}})
    assert NoMaterial.sub_configs(with_mlp) == {"mlp_network_config": MLPConfig}
    assert DiffuseWithPointLight.sub_configs(component_config(DiffuseWithPointLight)) == {}
    assert SolidColor.sub_configs(component_config(SolidColor)) == {}


def test_sub_configs_leave_out_unknown_otypes() -> None:
    cfg = component_config(ImplicitVolume, {"pos_encoding_config": {"otype": "Nope"}})
    assert ImplicitVolume.sub_configs(cfg) == {"mlp_network_config": MLPConfig}
    with pytest.raises(ConfigError, match=r"system\.geometry\.pos_encoding_config\.otype"):
        ImplicitVolume.validate_config(cfg, "system.geometry")


# -- the lookup helpers ---------------------------------------------------------------------------


def test_encoding_config_class_matches_otype_case_insensitively() -> None:
    assert encoding_config_class({"otype": "hashgrid"}, "p") is HashGridConfig
    assert encoding_config_class({"otype": "FREQUENCY"}, "p") is FrequencyConfig
    assert find_encoding_config_class({"otype": "sphericalharmonics"}) is SphericalHarmonicsConfig
    assert find_encoding_config_class({"otype": "Nope"}) is None
    assert find_encoding_config_class({}) is None
    assert find_encoding_config_class("HashGrid") is None
    assert find_mlp_config_class({"otype": "fullyfusedmlp"}) is MLPConfig
    assert find_mlp_config_class({"otype": "Nope"}) is None
    assert find_mlp_config_class(None) is None


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"otype": "HashGird"}, r"enc\.otype: unknown encoding 'HashGird' \(did you mean"),
        ({}, r"enc\.otype: a required value is missing"),
        ({"otype": ["HashGrid"]}, r"enc\.otype: unknown encoding"),
        ("HashGrid", r"enc must be a mapping with an 'otype'"),
    ],
)
def test_encoding_config_class_errors_match_build_encoding(config: object, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        encoding_config_class(config, "enc")
    with pytest.raises(ConfigError, match=pattern):
        build_encoding(3, config, "enc")  # type: ignore[arg-type]


def test_mlp_config_class_errors() -> None:
    with pytest.raises(ConfigError, match=r"mlp\.otype: unknown network 'Nope'"):
        mlp_config_class({"otype": "Nope"}, "mlp")
    with pytest.raises(ConfigError, match=r"mlp must be a mapping"):
        mlp_config_class(None, "mlp")
