"""What DreamFusion's components tell a captured (CUDA graph) step, on the CPU: why a config is
not captured, the per-step host draws taken before the step as the step itself would take them,
loss weights as tensors, and the sample buffers sized between steps."""

from __future__ import annotations

import random

import pytest
import torch

from studio.api import BaseSystem
from studio_dreamfusion.materials import DiffuseWithPointLight
from studio_dreamfusion.system import DreamFusionSystem, weighted_guidance_losses
from tests.plugins.dreamfusion.preset_systems import preset_system


def dreamfusion_sd(**renderer) -> DreamFusionSystem:
    """The dreamfusion-sd preset's system without its diffusion model (guidance and prompts)."""
    return preset_system("dreamfusion-sd", DreamFusionSystem, **renderer)


def test_the_system_says_which_component_keeps_its_step_from_being_captured():
    (reason,) = dreamfusion_sd().graph_blockers()
    assert reason.startswith("system.renderer.fixed_capacity is false")
    (reason,) = dreamfusion_sd(fixed_capacity=True).graph_blockers()
    assert reason == "system.renderer marches with the torch backend, not nerfacc"


def test_a_subclass_must_declare_its_own_host_state():
    class Derived(DreamFusionSystem):
        pass

    system = dreamfusion_sd()
    system.__class__ = Derived
    assert any("(Derived) does not declare" in r for r in system.graph_blockers())


def test_soft_shading_draws_its_light_split_before_the_step_as_the_step_draws_it():
    """Magic3D's soft shading: the split ``u`` is drawn by graph_state into a device tensor
    (a new ``u`` is not a new graph), from the same stream at the same point as the eager
    call draws it, so the shaded colours are bit-equal."""
    cfg = {"soft_shading": True, "ambient_only_steps": 2}
    eager, graphed = DiffuseWithPointLight(cfg).train(), DiffuseWithPointLight(cfg).train()
    assert graphed.graph_blocker() is None
    features = torch.rand(16, 3)
    positions, normals = torch.rand(16, 3), torch.nn.functional.normalize(torch.rand(16, 3) - 0.5)
    lights = torch.rand(16, 3) + 2.0

    def shaded(material: DiffuseWithPointLight) -> torch.Tensor:
        return material(features, positions, normals, lights)

    random.seed(11)
    drawn_eagerly = []
    for step in range(30):
        eager.update_step(0, step)
        drawn_eagerly.append(shaded(eager))
    random.seed(11)
    keys = set()
    for step in range(30):
        graphed.update_step(0, step)
        keys.add(graphed.graph_state())
        assert torch.equal(shaded(graphed), drawn_eagerly[step])  # bit for bit
        assert torch.equal(shaded(graphed), drawn_eagerly[step])  # the capture sees it too
    assert keys == {("albedo",), ("diffuse",), ("textureless",)}  # u is not in the key
    assert len({float(c.sum()) for c in drawn_eagerly[2:]}) > 10  # u varies per step


def test_the_step_shading_is_drawn_before_the_step_as_the_step_draws_it():
    cfg = {"ambient_only_steps": 3, "diffuse_prob": 0.75, "textureless_prob": 0.5}
    eager, graphed = DiffuseWithPointLight(cfg).train(), DiffuseWithPointLight(cfg).train()
    random.seed(7)
    drawn_eagerly = []
    for step in range(40):
        eager.update_step(0, step)
        drawn_eagerly.append(eager.choose_shading())
    random.seed(7)
    drawn_before = []
    for step in range(40):
        graphed.update_step(0, step)
        (shading,) = graphed.graph_state()
        # the step's calls (its eager run and its capture) all see the drawn shading
        assert graphed.choose_shading() == graphed.choose_shading() == shading
        drawn_before.append(shading)
    assert drawn_before == drawn_eagerly
    assert set(drawn_eagerly[3:]) == {"albedo", "diffuse", "textureless"}
    graphed.update_step(0, 40)  # a step without graph_state draws its own again
    random.seed(3)
    expected = DiffuseWithPointLight(cfg).train().choose_shading()
    random.seed(3)
    assert graphed.choose_shading() == expected


class Weighted(BaseSystem):
    def graph_state(self) -> tuple:
        return ()


def test_loss_weights_become_tensors_refilled_before_every_step():
    system = Weighted({"loss": {"lambda_ramp": [0, 0.0, 1.0, 10], "lambda_fixed": 2.0}})
    losses = {"loss_ramp": torch.tensor(3.0), "loss_fixed": torch.tensor(5.0)}
    eager = []
    for step in (0, 4, 10):
        system.global_step = step
        eager.append(weighted_guidance_losses(losses, system.loss_weight, system.cfg.loss)[0])
    system.use_graph_weights(torch.device("cpu"))
    ramp = system.loss_weight("lambda_ramp")
    keys, graphed = [], []
    for step in (0, 4, 10):
        system.global_step = step
        system.refresh_loss_weights()  # the trainer's, before every step
        keys.append(system.graph_key()[0])
        assert system.loss_weight("lambda_ramp") is ramp  # one tensor, refilled in place
        graphed.append(weighted_guidance_losses(losses, system.loss_weight, system.cfg.loss)[0])
    assert [float(x) for x in graphed] == [float(x) for x in eager]  # bit for bit
    assert [float(x) for x in eager] == pytest.approx([10.0, 11.2, 13.0])
    # which terms are on is host state (a system branches on it): 0 at step 0, then positive
    assert keys == [("lambda_fixed",), ("lambda_fixed", "lambda_ramp"), keys[1]]


def test_sample_buffers_are_sized_between_captured_steps():
    """With captured steps a step's counts reach the host through the next step's
    graph_state, which grows the buffers (the new size is a new key) after an overflow."""
    from studio_dreamfusion.backgrounds import SolidColor
    from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
    from studio_dreamfusion.materials import NoMaterial
    from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer

    torch.manual_seed(0)
    grid = dict(otype="HashGrid", n_levels=2, n_features_per_level=2, log2_hashmap_size=10)
    grid.update(base_resolution=4, per_level_scale=1.5)
    geometry = ImplicitVolume(
        {"radius": 1.0, "pos_encoding_config": grid, "density_bias": "blob_dreamfusion"}
    )
    renderer = NeRFVolumeRenderer(
        {"radius": 1.0, "num_samples_per_ray": 48, "backend": "torch",
         "torch_sampling": "marching", "fixed_capacity": True},
        geometry=geometry,
        material=NoMaterial({"color_activation": "sigmoid"}),
        background=SolidColor({"color": [0.0, 0.0, 1.0]}),
    ).train()  # fmt: skip
    rays_o = torch.tensor([-2.5, 0.0, 0.0]).expand(1, 8, 8, 3)
    rays_d = torch.nn.functional.normalize(
        torch.randn(1, 8, 8, 3, generator=torch.Generator().manual_seed(1)) * 0.2
        + torch.tensor([1.0, 0.0, 0.0]),
        dim=-1,
    )

    def render() -> None:
        renderer(rays_o=rays_o, rays_d=rays_d, light_positions=torch.zeros(1, 3))

    assert renderer.graph_state() == ("unsized",)
    render()  # the first step sizes the buffers (it waits once)
    capacity = renderer.sample_capacity
    sized = capacity.capacity
    assert renderer.graph_state() == (sized,)
    capacity.capacity, capacity.granule = (64, 64), 64  # too small: this step overflows
    render()
    assert capacity.overflows == 0  # not known yet: nothing waited for the counts
    grown = renderer.graph_state()[0]  # the next step's graph_state reads them
    assert capacity.overflows == 1 and grown[0] > 64 and grown[1] > 64
    render()
    assert renderer.graph_state() == (grown,) and capacity.overflows == 1
    # captured steps stop (the run goes on eagerly): the buffers are sized by the steps again
    capacity.capacity = (64, 64)
    render()  # the last captured step: overflows
    for step in (1, 2):
        renderer.update_step(0, step)  # no graph_state: an eager step
        render()
    assert capacity.overflows >= 2 and capacity.capacity[0] > 64


@pytest.mark.parametrize("option", ["compile=reduce-overhead", "token_merging=true"])
def test_guidance_options_that_are_not_captured_are_named(option, tiny_sd_model):
    from studio.api import ConfigError  # noqa: F401 - the import path plugins use
    from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance

    key, value = option.split("=")
    cfg = StableDiffusionGuidance.Config(
        pretrained_model_name_or_path=str(tiny_sd_model),
        **{key: value if key == "compile" else value == "true"},
    )
    guidance = object.__new__(StableDiffusionGuidance)  # its blocker reads the config only
    guidance.cfg, guidance.config_path = cfg, "system.guidance"
    assert guidance.graph_blocker().startswith(f"system.guidance.{key}")


class LazyStandInGraph:
    """A CUDA graph's behaviour in Python: capturing runs nothing (the outputs are filled by each
    replay), replaying runs the recorded body."""

    def capture(self, fn):
        self.fn, self.outputs = fn, {}
        return self.outputs

    def replay(self):
        self.outputs.clear()
        self.outputs.update(self.fn())


def test_the_trainers_captured_path_trains_as_its_eager_path(tmp_path, monkeypatch):
    """The trainer's captured-step path on the CPU, graphs stood in for (their capture runs
    nothing, a replay reruns the body): the warm-up, the host draws taken before the step, the
    static batch and the loss weights as tensors give the eager run's metrics exactly, and past
    the warm-up the steps are replays. (With captured steps the learning rates are float32
    tensors: their updates and logged values differ from a Python float's in the last bit.)"""
    import csv

    import studio.training.trainer as trainer_module
    from studio.training.graphs import StepGraphs
    from tests.in_process_cli import run_method

    replays = []

    class StandInSteps(StepGraphs):
        def __init__(self, body, **kwargs):
            super().__init__(body, new_graph=LazyStandInGraph, **kwargs)
            replays.append(self)

    def tensor_learning_rates(optimizer, device=None):  # `capturable` is for CUDA only
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(float(group["lr"]))
        return optimizer

    # both runs step with tensor learning rates (an update with a float32 learning rate differs
    # from one with a Python float in the last bit), so the runs can be compared bit for bit
    build_optimizer = trainer_module.build_optimizer
    monkeypatch.setattr(
        trainer_module, "build_optimizer", lambda *a: tensor_learning_rates(build_optimizer(*a))
    )
    monkeypatch.setattr(trainer_module, "capture_blockers", lambda *args, **kwargs: None)
    monkeypatch.setattr(trainer_module, "make_capturable", tensor_learning_rates)
    monkeypatch.setattr(trainer_module, "StepGraphs", StandInSteps)
    monkeypatch.setattr(DreamFusionSystem, "graph_blockers", lambda self: [])

    def run(graphs: str) -> list[dict[str, str]]:
        run_dir = run_method(
            "dreamfusion-primitives", "a red cube", tmp_path / graphs, monkeypatch,
            "trainer.max_steps=40", "trainer.val_check_interval=40", "data.n_test_views=1",
            "data.n_val_views=1", "system.material.ambient_only_steps=16",
            f"trainer.cuda_graphs={graphs}",
        )  # fmt: skip
        with (run_dir / "metrics.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    eager, graphed = run("false"), run("true")
    (steps,) = replays
    # two keys: albedo (the warm-up's end), diffuse (drawn from step 16, the end of the
    # ambient-only phase; the preset has no textureless shading); every other step replays
    assert (steps.captures, steps.replays) == (2, 40 - 10 - 2)
    assert len(graphed) == len(eager) == 40
    for row_e, row_g in zip(eager, graphed, strict=True):
        assert row_g == row_e, row_e["step"]  # bit for bit
