"""Embedded models: plugins register named model folders; resolve_model and `studio models list`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from studio.cli.app import app
from studio.models.embedded import locate
from studio.models.hub import ModelNotAvailableError, pull_model, resolve_model
from studio.registry import get_registry
from studio.specs import MethodSpec
from tests.core.embedded_models import HERE, ModelPlugin
from tests.core.models.cache_layout import make_cached_repo


@pytest.fixture(autouse=True)
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache in tmp and downloads off: no test here may touch the network."""
    for name in ("HF_HOME", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    return folder


def test_registration_is_lazy_and_listed_per_plugin(studio_plugin):
    target = "studio_tests_no_such_weights_module:folder"
    studio_plugin(ModelPlugin({"lazy-sd": target}), name="lazy", distribution="studio-lazy")
    registry = get_registry()
    assert "lazy-sd" in registry.names("model")
    assert registry.get("model", "lazy-sd").target == target
    assert "studio_tests_no_such_weights_module" not in sys.modules
    assert not registry.broken


def test_resolve_model_returns_the_registered_folder(embedded_models_plugin):
    folder = embedded_models_plugin["toy-sd"]
    assert resolve_model("toy-sd") == folder
    assert (
        resolve_model("toy-if", subfolders=["unet", "text_encoder"])
        == embedded_models_plugin["toy-if"]
    )
    assert pull_model("toy-sd") == folder  # nothing to pull, even offline


def test_missing_subfolder_names_model_plugin_and_key(embedded_models_plugin):
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model("toy-sd", subfolders=["unet", "vae"], config_key="system.guidance.x")
    message = str(info.value)
    assert message.startswith("The embedded model 'toy-sd' from plugin 'toy-models'")
    assert "studio-toy-models" in message and "no (or empty) vae subfolder(s)" in message
    assert "system.guidance.x" in message and "\n" not in message


def test_existing_local_folder_comes_before_a_registered_name(
    embedded_models_plugin, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy-sd").mkdir()
    assert resolve_model("toy-sd") == Path("toy-sd")
    (tmp_path / "toy-sd").rmdir()
    (tmp_path / "toy-sd").write_text("a file is no model folder")  # a file does not shadow
    assert resolve_model("toy-sd") == embedded_models_plugin["toy-sd"]


def test_registered_name_comes_before_the_hub_cache(embedded_models_plugin, offline_cache):
    make_cached_repo(offline_cache, "toy-sd", {"model_index.json": b"{}"})
    make_cached_repo(offline_cache, "owner/other", {"model_index.json": b"{}"})
    assert resolve_model("toy-sd") == embedded_models_plugin["toy-sd"]
    assert resolve_model("owner/other").parent.parent.name == "models--owner--other"


def test_near_miss_of_a_registered_name_is_suggested(embedded_models_plugin):
    with pytest.raises(ModelNotAvailableError, match="Did you mean the registered model 'toy-sd'"):
        resolve_model("toy-sdd")


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("raises", f"{HERE}:raises() raised RuntimeError: weights were not unpacked"),
        ("missing_folder", "points at /nonexistent/studio-test-weights, which is not a folder"),
        ("no_such_attr", "has no attribute 'no_such_attr'"),
    ],
)
def test_broken_embedded_model_is_one_paragraph(studio_plugin, attr, expected):
    target = f"{HERE}:{attr}"
    studio_plugin(ModelPlugin({"bad-sd": target}), name="bad", distribution="studio-bad")
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model("bad-sd")
    message = str(info.value)
    assert expected in message
    assert "'bad-sd'" in message and "studio-bad" in message and "\n" not in message


def test_unregistered_name_is_not_located(embedded_models_plugin):
    assert locate("toy") is None
    assert locate("toy-sd").path == embedded_models_plugin["toy-sd"]


def test_models_list_shows_embedded_models(embedded_models_plugin, studio_plugin, offline_cache):
    studio_plugin(ModelPlugin({"bad-sd": f"{HERE}:raises"}), name="bad", distribution="studio-bad")
    make_cached_repo(offline_cache, "owner/pipe", {"model_index.json": b"{}"})
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    hub_part, embedded_part = result.output.strip().split("\n\n")
    assert hub_part.splitlines()[1].split()[0] == "owner/pipe"
    lines = embedded_part.splitlines()
    assert lines[0].split() == ["EMBEDDED", "MODEL", "SIZE", "PLUGIN", "PATH"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) >= {"toy-sd", "toy-if", "bad-sd"}
    folder = embedded_models_plugin["toy-sd"]
    # model_index.json (2 bytes) + unet and text_encoder config.json (14 bytes each)
    assert rows["toy-sd"].split()[1:] == ["30", "B", "studio-toy-models", str(folder)]
    assert "studio-bad" in rows["bad-sd"] and "(unavailable)" in rows["bad-sd"]
    assert "weights were not unpacked" in rows["bad-sd"]


def _config(model: str, prompt: str, negative: str = "") -> dict:
    return {
        "system": {
            "prompt_processor": {
                "pretrained_model_name_or_path": model,
                "prompt": prompt,
                "negative_prompt": negative,
            },
            "guidance": {"pretrained_model_name_or_path": model},
        }
    }


@pytest.fixture
def cat_model(studio_plugin, tmp_path):
    """``cat-sd``: an embedded model whose ``prompt_check`` accepts cats only."""
    plugin = ModelPlugin(
        {"cat-sd": f"{HERE}:toy_sd", "plain-sd": f"{HERE}:toy_sd"},
        details={"cat-sd": {"prompt_check": f"{HERE}:only_cats"}},
    )
    studio_plugin(plugin, name="cats", distribution="studio-cats")


#: A method reading the prompt and models where ``_config`` puts them.
CAT_METHOD = MethodSpec(
    name="cats",
    system="tests.core.embedded_models:toy_sd",
    prompt_key="system.prompt_processor.prompt",
    negative_prompt_key="system.prompt_processor.negative_prompt",
    model_keys=[
        "system.prompt_processor.pretrained_model_name_or_path",
        "system.guidance.pretrained_model_name_or_path",
    ],
)


def test_prompt_check_refuses_a_prompt_the_model_cannot_follow(cat_model):
    from studio.config.resolve import check_prompts
    from studio.errors import ConfigError

    check_prompts(_config("cat-sd", "a cat"), CAT_METHOD)
    check_prompts(_config("plain-sd", "a dog"), CAT_METHOD)  # no prompt_check: anything goes
    check_prompts(_config("some/hub-id", "a dog"), CAT_METHOD)  # not an embedded model
    for prompt, negative in (("a dog", ""), ("a cat", "blurry")):
        with pytest.raises(ConfigError) as info:
            check_prompts(_config("cat-sd", prompt, negative), CAT_METHOD)
        message = str(info.value)
        assert "'cat-sd'" in message and "system.prompt_processor.prompt" in message
        assert "draws cats only" in message and "\n" not in message


def test_studio_run_checks_the_prompt_before_creating_anything(cat_model, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["run", "dreamfusion-sd", "model=cat-sd", "prompt=a dog", f"exp_root_dir={out}"],
    )
    assert result.exit_code == 2, result.output
    assert "draws cats only" in result.output and "Traceback" not in result.output
    assert not out.exists()
