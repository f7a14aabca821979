"""Plugin discovery: duplicates, broken plugins, disabled plugins, lazy registration."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio.cli.plugins_cmd import list_plugins
from studio.errors import PluginError
from studio.hookspecs import hookimpl
from studio.registry import get_registry
from tests.conftest import pip_install_target, studio_env


class GeometryPlugin:
    def __init__(self, name: str, target: str = "studio.base:BaseModule"):
        self.name = name
        self.target = target

    @hookimpl
    def studio_register_geometries(self, register):
        register(self.name, self.target)


def test_core_registers_through_the_same_hooks():
    registry = get_registry()
    entry = registry.get("data", "random-camera")
    assert entry.plugin.distribution == "studio-core"
    assert entry.target == "studio.data.random_camera:RandomCameraDataModule"


def test_fixture_plugin_registers_and_is_removed(studio_plugin):
    studio_plugin(GeometryPlugin("blob"), name="blob-plugin", distribution="blob-dist")
    registry = get_registry()
    assert registry.get("geometry", "blob").plugin.distribution == "blob-dist"


def test_fixture_plugin_is_gone_in_the_next_test():
    assert "blob" not in get_registry().names("geometry")


def test_duplicate_names_name_both_distributions(studio_plugin):
    studio_plugin(GeometryPlugin("shape"), name="first", distribution="studio-first")
    studio_plugin(GeometryPlugin("shape"), name="second", distribution="studio-second")
    with pytest.raises(PluginError) as info:
        get_registry().get("geometry", "shape")
    message = str(info.value)
    assert "studio-first" in message and "studio-second" in message
    assert "'shape'" in message


def test_unknown_name_suggests_close_matches(studio_plugin):
    studio_plugin(GeometryPlugin("implicit-volume"), name="vol")
    with pytest.raises(PluginError, match="Did you mean 'implicit-volume'"):
        get_registry().get("geometry", "implicit-volum")


def test_plugin_whose_hook_raises_is_reported_broken(studio_plugin):
    class Broken:
        @hookimpl
        def studio_register_materials(self, register):
            raise RuntimeError("boom in hook")

    studio_plugin(Broken(), name="broken-hook", distribution="studio-broken-hook")
    registry = get_registry()
    assert [b.plugin.name for b in registry.broken] == ["broken-hook"]
    assert "boom in hook" in registry.broken[0].error
    assert "random-camera" in registry.names("data")  # everything else still works


def test_bad_registration_target_is_reported(studio_plugin):
    studio_plugin(GeometryPlugin("nowhere", "no.such.module:Thing"), name="bad-target")
    with pytest.raises(PluginError, match="could not be imported"):
        get_registry().load("geometry", "nowhere")


def test_models_are_a_registered_kind_listed_by_plugins_list(studio_plugin, capsys):
    class Models:
        @hookimpl
        def studio_register_models(self, register):
            register("blob-sd", "studio_tests_absent_weights:sd_folder")
            register("blob-if", "studio_tests_absent_weights:if_folder")

    studio_plugin(Models(), name="blob-models", distribution="studio-blob-models")
    registry = get_registry()
    assert [n for n in registry.names("model") if n.startswith("blob")] == ["blob-if", "blob-sd"]
    assert registry.get("model", "blob-sd").target == "studio_tests_absent_weights:sd_folder"
    assert "studio_tests_absent_weights" not in sys.modules  # discovery imports no target
    assert list_plugins(as_json=False) == 0
    listing = capsys.readouterr().out
    assert "blob-models  (studio-blob-models 0)\n    model: blob-if, blob-sd\n" in listing
    with pytest.raises(PluginError, match=r"No model named 'blob-s'.*Did you mean 'blob-sd'"):
        registry.get("model", "blob-s")


def test_disable_env_var_skips_plugins(studio_plugin, monkeypatch):
    studio_plugin(GeometryPlugin("blob"), name="blob-plugin", distribution="studio-blob")
    monkeypatch.setenv("STUDIO_DISABLE_PLUGINS", "studio-blob")
    from studio import registry as registry_module

    registry_module.invalidate()
    registry = get_registry()
    assert "blob" not in registry.names("geometry")
    assert [d.name for d in registry.disabled] == ["blob-plugin"]
    registry_module.invalidate()


def _make_package(root: Path, dist: str, module: str, body: str) -> Path:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(textwrap.dedent(body))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{dist}"
            version = "1.2.3"
            [project.entry-points."studio.plugins"]
            {module} = "{module}"
            [tool.setuptools]
            packages = ["{module}"]
            """
        )
    )
    return root


@pytest.fixture(scope="module")
def entry_point_site(tmp_path_factory) -> Path:
    """Three real installed plugins: one broken at import, two registering the same name."""
    site = tmp_path_factory.mktemp("ep-site")
    work = tmp_path_factory.mktemp("ep-src")
    broken = _make_package(
        work / "broken", "studio-broken", "studio_broken", "import no_such_dependency_xyz\n"
    )
    body = """
        from studio.hookspecs import hookimpl

        @hookimpl
        def studio_register_materials(register):
            register("shiny", "{module}:Shiny")

        @hookimpl
        def studio_register_models(register):
            register("{module}-sd", "{module}.no_such_weights:folder")  # lazy: never imported
        """
    one = _make_package(work / "one", "studio-one", "studio_one", body.format(module="studio_one"))
    two = _make_package(work / "two", "studio-two", "studio_two", body.format(module="studio_two"))
    for package in (broken, one, two):
        pip_install_target(package, site)
    return site


def _plugins_json(site: Path, **env: str) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "studio", "plugins", "list", "--json"],
        env=studio_env(site, **env),
        capture_output=True,
        text=True,
    )
    return result.returncode, json.loads(result.stdout)


def test_installed_broken_plugin_is_listed_and_cli_keeps_working(entry_point_site):
    code, report = _plugins_json(entry_point_site, STUDIO_DISABLE_PLUGINS="studio-two")
    assert code == 0
    broken = {b["name"]: b for b in report["broken"]}
    assert "no_such_dependency_xyz" in broken["studio_broken"]["error"]
    assert broken["studio_broken"]["distribution"] == "studio-broken"
    one = next(p for p in report["plugins"] if p["name"] == "studio_one")
    assert one == {
        "name": "studio_one",
        "distribution": "studio-one",
        "version": "1.2.3",
        "registers": {"material": ["shiny"], "model": ["studio_one-sd"]},
        "pipelines": {},
    }
    assert [d["distribution"] for d in report["disabled"]] == ["studio-two"]
    methods = subprocess.run(
        [sys.executable, "-m", "studio", "methods"],
        env=studio_env(entry_point_site, STUDIO_DISABLE_PLUGINS="studio-two"),
        capture_output=True,
        text=True,
    )
    assert methods.returncode == 0, methods.stderr


def test_installed_duplicates_are_reported_with_both_distributions(entry_point_site):
    code, report = _plugins_json(entry_point_site)
    assert code == 1
    (conflict,) = report["conflicts"]
    assert conflict["kind"] == "material" and conflict["name"] == "shiny"
    assert sorted(conflict["distributions"]) == ["studio-one", "studio-two"]


# -- typed registrations -------------------------------------------------------------------------


def _broken(name: str) -> str:
    (broken,) = [b for b in get_registry().broken if b.plugin.name == name]
    return broken.error


def test_kinds_are_derived_from_the_hook_specs():
    from studio import hookspecs
    from studio.registry import KIND_HOOKS, KIND_SPECS
    from studio.specs import GuidanceSpec, MethodSpec, ModelSpec

    declared = {name for name in dir(hookspecs) if name.startswith("studio_register_")}
    assert set(KIND_HOOKS.values()) == declared - {"studio_register_commands"}
    assert KIND_SPECS["method"] is MethodSpec and KIND_SPECS["guidance"] is GuidanceSpec
    assert KIND_SPECS["model"] is ModelSpec


def test_a_misspelt_hook_is_refused_naming_the_plugin(studio_plugin):
    class Typo:
        @hookimpl
        def studio_register_geometrys(self, register):
            register("never", "studio.base:BaseModule")

    studio_plugin(Typo(), name="typo-plugin", distribution="studio-typo")
    message = _broken("typo-plugin")
    assert "plugin 'typo-plugin' (distribution studio-typo)" in message
    assert "studio_register_geometrys" in message and "studio_register_geometries" in message
    assert "never" not in get_registry().names("geometry")


@pytest.mark.parametrize(
    ("kind_hook", "args", "kwargs", "expected"),
    [
        (
            "methods",
            ("m", "pkg.sys:S"),
            {"promt_key": "x"},
            "'promt_key' (did you mean 'prompt_key'?)",
        ),
        ("guidances", ("g", "pkg.g:G"), {"suffix": "-sd"}, "'suffix'"),
        ("geometries", ("g", "pkg.g:G"), {"model_suffix": "-sd"}, "'model_suffix'"),
        ("geometries", ("g", "not a path"), {}, "'package.module:Attribute'"),
        ("methods", ("m",), {}, "needs system="),
        ("methods", ("m", "pkg.s:S"), {"shorthands": {"prompt": "system.p"}}, "core's own"),
        ("methods", ("m", "pkg.s:S"), {"shorthands": {"a.b": "system.p"}}, "one plain name"),
        ("methods", ("m", "pkg.s:S"), {"shorthands": {"shape": "system p"}}, "dotted config"),
    ],
)
def test_an_invalid_registration_is_refused_naming_the_plugin_and_the_field(
    studio_plugin, kind_hook, args, kwargs, expected
):
    class Bad:
        pass

    def hook(self, register):
        register(*args, **kwargs)

    hook.__name__ = f"studio_register_{kind_hook}"
    setattr(Bad, hook.__name__, hookimpl(hook))
    studio_plugin(Bad(), name="bad-fields", distribution="studio-bad")
    message = _broken("bad-fields")
    assert "plugin 'bad-fields' (distribution studio-bad)" in message
    assert expected in message


def test_specs_carry_what_core_reads(studio_plugin):
    from studio.specs import MethodSpec

    class Good:
        @hookimpl
        def studio_register_methods(self, register):
            register(MethodSpec(name="spec-method", system="pkg.s:S", prompt_key="system.prompt"))
            register(
                "kw-method",
                system="pkg.s:S",
                model_keys="system.model",
                shorthands={"shape": "system.shape", "colour": "system.colour"},
            )
            register("pipe", stages=[{"name": "a", "method": "spec-method"}])

    studio_plugin(Good(), name="good")
    registry = get_registry()
    assert registry.get("method", "spec-method").spec.prompt_key == "system.prompt"
    assert registry.get("method", "kw-method").spec.model_keys == ("system.model",)
    assert dict(registry.get("method", "kw-method").spec.shorthands) == {
        "shape": "system.shape",
        "colour": "system.colour",
    }
    pipe = registry.get("method", "pipe").spec
    assert pipe.is_pipeline and pipe.stages[0].method == "spec-method" and pipe.target == ""


def test_methods_survives_a_duplicate_method_and_lists_broken_plugins(studio_plugin):
    from typer.testing import CliRunner

    from studio.cli.app import app

    class Method:
        def __init__(self, system: str) -> None:
            self.system = system

        @hookimpl
        def studio_register_methods(self, register):
            register("twin", system=self.system, description="a twin")

    class Typo:
        @hookimpl
        def studio_register_method(self, register):
            pass

    studio_plugin(Method("pkg.a:A"), name="first", distribution="studio-first")
    studio_plugin(Method("pkg.b:B"), name="second", distribution="studio-second")
    studio_plugin(Typo(), name="typo", distribution="studio-typo")
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0, result.output
    assert "twin" in result.output and "CONFLICT" in result.output
    assert "studio-first" in result.output and "studio-second" in result.output
    assert "BROKEN plugin typo (studio-typo)" in result.output
