"""``system.weights`` with ``weights_ignore_modules``: another run's modules loaded into a fresh
system (step state from that checkpoint, optimizer and step fresh), refused with both shapes when
a module differs; skipped when the system is resumed. And components report their own config
path."""

from __future__ import annotations

import pytest
import torch

from studio.errors import ConfigError, RunDirError
from studio.training.checkpoint import save_checkpoint


@pytest.fixture
def toy_system(toy_plugin):
    from studio_toy.system import ToyFitSystem

    return ToyFitSystem


def saved_run(tmp_path, system_cls, hidden: int = 16, step: int = 7):
    """A run directory (configs + ckpts/last.ckpt) holding a ToyFitSystem's state."""
    torch.manual_seed(3)
    source = system_cls({"background": {"hidden": hidden}})
    root = tmp_path / f"run-{hidden}"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "parsed.yaml").write_text("method: toy-fit\n")
    save_checkpoint(
        root / "ckpts" / "last.ckpt", {"global_step": step, "state_dict": source.state_dict()}
    )
    return root, source


def test_weights_load_another_runs_modules_and_its_step_state(tmp_path, toy_system):
    root, source = saved_run(tmp_path, toy_system)
    loaded = toy_system({"weights": str(root)})
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.seen_steps == [7]  # do_update_step(on_load_weights) at the checkpoint's step
    assert loaded.global_step == 0  # the step itself starts fresh
    by_file = toy_system({"weights": str(root / "ckpts" / "last.ckpt")})
    assert torch.equal(by_file.field.net[0].weight, source.field.net[0].weight)


def test_ignored_modules_keep_their_fresh_values(tmp_path, toy_system):
    root, source = saved_run(tmp_path, toy_system)
    torch.manual_seed(11)
    fresh = toy_system({})
    torch.manual_seed(11)
    loaded = toy_system({"weights": str(root), "weights_ignore_modules": ["field"]})
    assert torch.equal(loaded.field.net[0].weight, fresh.field.net[0].weight)
    assert not torch.equal(loaded.field.net[0].weight, source.field.net[0].weight)


def test_a_module_of_another_shape_names_the_module_and_both_shapes(tmp_path, toy_system):
    root, _ = saved_run(tmp_path, toy_system, hidden=16)
    with pytest.raises(RunDirError) as info:
        toy_system({"weights": str(root), "background": {"hidden": 8}})
    message = str(info.value)
    assert "module 'field' differs" in message
    assert "(16, 3)" in message and "(8, 3)" in message
    assert "weights_ignore_modules=[field]" in message


def test_resumed_systems_do_not_load_weights(tmp_path, toy_system):
    root, source = saved_run(tmp_path, toy_system)
    torch.manual_seed(5)
    resumed = toy_system({"weights": str(root)}, resumed=True)
    assert not torch.equal(resumed.field.net[0].weight, source.field.net[0].weight)


def test_a_missing_weights_source_is_a_config_error_at_resolution(toy_plugin, tmp_path):
    from studio.config.resolve import load_experiment

    with pytest.raises(ConfigError) as info:
        load_experiment("toy-fit", [f"system.weights={tmp_path / 'nothing'}"], prompt="x")
    assert "system.weights=" in str(info.value) and "no such file" in str(info.value)


def test_components_report_the_config_path_they_were_built_at(toy_plugin):
    from studio.systems.lift3d import build_component

    with pytest.raises(ConfigError) as info:
        build_component(
            "background", "toy-direction-field", {"hiden": 3}, "system.second_background"
        )
    assert "system.second_background.hiden" in str(info.value)
    built = build_component("background", "toy-direction-field", {}, "system.second_background")
    assert built.config_path == "system.second_background"


def test_config_differences_list_every_differing_leaf() -> None:
    from studio.training.checkpoint import config_differences

    source = {"a": 1, "b": {"c": [1, 2], "d": "x"}}
    here = {"a": 1, "b": {"c": [1, 3]}, "e": 0.5}
    assert config_differences(source, here, "system") == [
        "system.b.c: [1, 2] in the source run, [1, 3] here",
        "system.b.d: 'x' in the source run, None here",
        "system.e: None in the source run, 0.5 here",
    ]


def test_weights_of_particles_ignore_each_particles_module_and_match_their_count() -> None:
    from studio.training.checkpoint import select_weights

    def state(count: int) -> dict[str, torch.Tensor]:
        found = {"geometry.w": torch.zeros(2), "background.w": torch.zeros(3)}
        for k in range(1, count):
            found |= {f"particles.{k}.geometry.w": torch.ones(2) * k}
            found |= {f"particles.{k}.background.w": torch.ones(3) * k}
        return found

    picked, missing = select_weights(state(3), state(3), ["background"], "system.weights", "x")
    assert sorted(picked) == ["geometry.w", "particles.1.geometry.w", "particles.2.geometry.w"]
    assert missing == []  # the ignored modules are not reported missing, in any particle
    with pytest.raises(RunDirError, match=r"holds 1 particle\(s\), this system trains 3"):
        select_weights(state(3), state(1), [], "system.weights", "x")
