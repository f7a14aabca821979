"""`model=NAME` / `--model NAME`: suffixes and keys from registrations, the composed overrides."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from studio.cli.app import app
from studio.config.model_shorthand import guidance_suffixes, model_for_guidance
from studio.config.resolve import compose_raw, method_spec, resolve
from studio.errors import ConfigError
from studio.hookspecs import hookimpl
from studio.registry import get_registry
from tests.core.embedded_models import HERE, ModelPlugin

GUIDANCE_KEY, PROCESSOR_KEY = (
    "system.guidance.pretrained_model_name_or_path",
    "system.prompt_processor.pretrained_model_name_or_path",
)


def needs_dreamfusion() -> None:
    pytest.importorskip("studio_dreamfusion")
    if "dreamfusion-sd" not in get_registry().names("method"):
        pytest.skip("the dreamfusion plugin is not installed")


def models_of(raw: dict) -> tuple[str, str]:
    system = raw["system"]
    return (
        system["prompt_processor"]["pretrained_model_name_or_path"],
        system["guidance"]["pretrained_model_name_or_path"],
    )


SUFFIXES = {"stable-diffusion": "-sd", "deep-floyd": "-if", "stable-diffusion-vsd": "-sd"}


def test_suffixes_and_keys_come_from_registrations(studio_plugin):
    needs_dreamfusion()
    assert guidance_suffixes(get_registry()) == SUFFIXES
    assert set(method_spec("dreamfusion-sd").model_keys) == {GUIDANCE_KEY, PROCESSOR_KEY}

    class Zero123Plugin:
        @hookimpl
        def studio_register_guidances(self, register):
            register("zero123", "tests.core.embedded_models:toy_sd", model_suffix="-z123")
            register("plain", "tests.core.embedded_models:toy_sd")

    studio_plugin(Zero123Plugin(), name="z123")
    assert guidance_suffixes(get_registry()) == {**SUFFIXES, "zero123": "-z123"}


@pytest.mark.parametrize(
    ("name", "guidance", "registered", "expected"),
    [
        ("toy", "stable-diffusion", {"toy-sd", "toy-if"}, "toy-sd"),
        ("toy", "deep-floyd", {"toy-sd", "toy-if"}, "toy-if"),
        ("toy", "stable-diffusion", {"toy", "toy-sd"}, "toy-sd"),  # the variant wins
        ("toy", "deep-floyd", {"toy", "toy-sd"}, "toy"),  # NAME itself is registered
        ("toy", "zero123", {"toy"}, "toy"),
        ("toy", "zero123", {"toy-sd"}, "toy"),  # no suffix for this guidance: pass through
        ("toy-sd", "stable-diffusion", {"toy-sd"}, "toy-sd"),  # a full name stays
        ("owner/model", "stable-diffusion", set(), "owner/model"),  # hub id: pass through
        ("/models/sd", "deep-floyd", {"toy-if"}, "/models/sd"),  # path: pass through
    ],
)
def test_model_for_guidance(name, guidance, registered, expected):
    assert model_for_guidance(name, guidance, registered, SUFFIXES) == expected


def test_variant_only_for_another_guidance_is_an_error():
    with pytest.raises(ConfigError) as info:
        model_for_guidance("toy", "deep-floyd", {"toy-sd"}, SUFFIXES)
    message = str(info.value)
    assert "'deep-floyd'" in message and "'toy-if'" in message
    assert "toy-sd (for guidance stable-diffusion)" in message
    assert "\n" not in message


def test_dreamfusion_presets_get_the_variant_of_their_guidance(embedded_models_plugin):
    needs_dreamfusion()
    assert models_of(compose_raw("dreamfusion-sd", [], "a cube", "toy")) == ("toy-sd", "toy-sd")
    assert models_of(compose_raw("dreamfusion-if", [], "a cube", "toy")) == ("toy-if", "toy-if")
    # the guidance type as composed from the overrides decides
    raw = compose_raw(
        "dreamfusion-sd",
        ["system.guidance_type=deep-floyd", "system.prompt_processor_type=deep-floyd"],
        "a cube",
        "toy",
    )
    assert models_of(raw) == ("toy-if", "toy-if")
    # pass-through, and the shorthand comes after the user's overrides
    raw = compose_raw("dreamfusion-sd", [f"{GUIDANCE_KEY}=owner/other"], "a cube", "owner/model")
    assert models_of(raw) == ("owner/model", "owner/model")
    assert compose_raw("dreamfusion-sd", [], "a cube")["system"]["guidance"][
        "pretrained_model_name_or_path"
    ] == ("stabilityai/stable-diffusion-2-1-base")


def test_the_composed_config_validates(embedded_models_plugin):
    needs_dreamfusion()
    resolved = resolve(compose_raw("dreamfusion-if", [], "a cube", "toy"))
    assert resolved.parsed["system"]["guidance"]["pretrained_model_name_or_path"] == "toy-if"


def test_cli_model_shorthand_and_option_reach_the_run_config(
    embedded_models_plugin, tmp_path, monkeypatch
):
    needs_dreamfusion()
    import studio.runner

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(studio.runner, "start", lambda *args: 0)  # compose and record, no training
    runner = CliRunner()
    for args in (["model=toy"], ["--model", "toy"], ["model=other", "--model", "toy"]):
        result = runner.invoke(app, ["run", "dreamfusion-if", "prompt=a cube", *args])
        assert result.exit_code == 0, result.output
        (raw_yaml,) = tmp_path.glob("outputs/*/*/configs/raw.yaml")
        raw = yaml.safe_load(raw_yaml.read_text())
        assert models_of(raw) == ("toy-if", "toy-if")
        assert "model" not in raw or raw["model"] is None
        for path in sorted(tmp_path.joinpath("outputs").rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()


def test_method_without_pretrained_model_is_an_error(toy_plugin):
    with pytest.raises(ConfigError) as info:
        compose_raw("toy-fit", [], "x", "toy")
    message = str(info.value)
    assert "method 'toy-fit' declares no model keys" in message
    assert "needs a method whose guidance loads a pretrained model" in message


def test_cli_error_is_one_paragraph_exit_2(studio_cli):
    result = studio_cli.run("run", "toy-fit", "prompt=x", "model=toy")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith("error: model=toy: method 'toy-fit' declares no model keys")
    assert "\n" not in message and "Traceback" not in message
    assert not studio_cli.run_dirs()


def test_cli_empty_model_is_refused(studio_cli):
    result = studio_cli.run("run", "toy-fit", "prompt=x", "model=")
    assert result.returncode == 2
    assert "names no model" in result.stderr


def test_registered_names_come_from_plugins(studio_plugin):
    needs_dreamfusion()
    studio_plugin(ModelPlugin({"solo": f"{HERE}:toy_sd"}), name="solo", distribution="studio-solo")
    assert models_of(compose_raw("dreamfusion-if", [], "a cube", "solo")) == ("solo", "solo")
