"""ProlificDreamer's three stages (reference §5.6): what each stage renders and sends to the
guidance, the losses it adds, and the loss terms each accepts."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch

from studio.api import ConfigError
from studio.config.resolve import load_experiment
from studio.data.random_camera import RandomCameraDataModule
from studio_prolificdreamer.system import ProlificDreamerSystem


class RecordingGuidance:
    """A stand-in for VSD or SDS: its losses are functions of the input; records each call."""

    def __init__(self, *losses: str) -> None:
        self.losses = losses
        self.calls: list[dict[str, Any]] = []

    def __call__(self, image, prompt_utils, rgb_as_latents=False, **batch):
        self.calls.append({"image": image.detach().clone(), "rgb_as_latents": rgb_as_latents})
        return {f"loss_{name}": image.mean() * (k + 1) for k, name in enumerate(self.losses)}


def make_system(preset: str, *overrides: str, losses: tuple[str, ...]) -> tuple[Any, dict]:
    parsed = load_experiment(preset, list(overrides), prompt="a red torus").parsed
    torch.manual_seed(0)
    system = ProlificDreamerSystem(parsed["system"], resumed=False)
    system.guidance, system.prompt_utils = RecordingGuidance(*losses), None
    data = dict(parsed["data"], width=32, height=32, batch_size=1, resolution_milestones=[])
    return system, RandomCameraDataModule(data).train_batch()


def mesh_system(preset: str, *overrides: str, losses: tuple[str, ...]) -> tuple[Any, dict]:
    """A stage on the tetrahedral grid (resolution 16) holding a sphere of radius 0.5."""
    system, batch = make_system(
        preset,
        "system.geometry_convert_from=",
        "system.geometry.isosurface_resolution=16",
        *overrides,
        losses=losses,
    )
    with torch.no_grad():
        sdf = system.geometry.grid_points().norm(dim=-1, keepdim=True) - 0.5
        system.geometry.sdf.copy_(sdf)
    return system, batch


def test_coarse_stage_is_dreamfusions_step_with_the_vsd_losses() -> None:
    system, batch = make_system(
        "prolificdreamer",
        "system.geometry.pos_encoding_config.n_levels=4",
        "system.geometry.pos_encoding_config.log2_hashmap_size=12",
        "system.renderer.num_samples_per_ray=16",
        losses=("vsd", "lora"),
    )
    out = system.training_step(batch)
    (call,) = system.guidance.calls
    assert call["image"].shape == (1, 32, 32, 3) and not call["rgb_as_latents"]
    # lambda_vsd 1, lambda_lora 1, sparsity 10 x mean opacity, opaque 0 before step 10001
    expected = 3.0 * call["image"].mean() + 10.0 * out["loss_sparsity"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert "loss_opaque" not in out


def test_geometry_stage_sends_the_normal_map_and_adds_the_mesh_regularisers() -> None:
    system, batch = mesh_system("prolificdreamer-geometry", losses=("sds",))
    assert system.material is None or system.material.cfg.n_output_dims == 0
    out = system.training_step(batch)
    (call,) = system.guidance.calls
    rendered = system.render(batch)
    assert "comp_rgb" not in rendered
    assert torch.allclose(call["image"], rendered["comp_normal"].detach(), atol=1e-6)
    mesh = system.geometry.isosurface()
    expected = (
        call["image"].mean() + 10000.0 * mesh.normal_consistency() + 10000.0 * mesh.laplacian()
    )
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    out["loss"].backward()
    assert system.geometry.sdf.grad is not None and system.geometry.sdf.grad.abs().sum() > 0
    assert len(system.eval_columns(batch)) == 2  # normal | opacity


def test_texture_stage_colours_the_fixed_mesh() -> None:
    system, batch = mesh_system("prolificdreamer-texture", losses=("vsd", "lora"))
    out = system.training_step(batch)
    (call,) = system.guidance.calls
    assert call["image"].shape == (1, 32, 32, 3)
    assert out["loss"].item() == pytest.approx(3.0 * call["image"].mean().item(), rel=1e-5)
    out["loss"].backward()
    texture = [p for n, p in system.geometry.named_parameters() if n.startswith("encoding")]
    assert texture and any(p.grad is not None and p.grad.abs().sum() > 0 for p in texture)
    assert not system.geometry.sdf.requires_grad  # fix_geometry


@pytest.mark.parametrize(
    ("stage", "guidance", "terms"),
    [
        ("coarse", "stable-diffusion-vsd", {"vsd", "lora", "orient", "sparsity", "opaque",
                                            "z_variance"}),
        ("geometry", "stable-diffusion", {"sds", "normal_consistency", "laplacian_smoothness"}),
        ("texture", "stable-diffusion-vsd", {"vsd", "lora"}),
    ],
)  # fmt: skip
def test_each_stage_accepts_its_own_loss_terms(stage: str, guidance: str, terms: set) -> None:
    cfg = ProlificDreamerSystem.Config(stage=stage, guidance_type=guidance)
    assert ProlificDreamerSystem.loss_terms(cfg) == terms


class RecordingSaver:
    def __init__(self) -> None:
        self.grids: dict[str, list] = {}

    def image_grid(self, name: str, columns: list) -> None:
        self.grids[name] = columns


def test_visualize_samples_appends_both_models_samples_to_validation_grids() -> None:
    system, batch = make_system(
        "prolificdreamer",
        "system.visualize_samples=true",
        "system.geometry.pos_encoding_config.n_levels=4",
        "system.geometry.pos_encoding_config.log2_hashmap_size=12",
        "system.renderer.num_samples_per_ray=16",
        losses=("vsd", "lora"),
    )
    drawn: list[dict] = []

    def sample(prompt_utils, **views):
        drawn.append(views)
        return {"pretrained": torch.zeros(1, 16, 16, 3), "lora": torch.ones(1, 16, 16, 3)}

    system.guidance.sample = sample
    system.saver = RecordingSaver()
    system.validation_step(batch, 0)
    (columns,) = system.saver.grids.values()
    assert len(columns) == 4  # rgb | opacity | pretrained sample | LoRA sample
    assert columns[2].max() == 0 and columns[3].min() == 255
    assert torch.equal(drawn[0]["c2w"], batch["c2w"])

    system.cfg = attrs.evolve(system.cfg, visualize_samples=False)
    system.saver = RecordingSaver()
    system.validation_step(batch, 0)
    assert len(next(iter(system.saver.grids.values()))) == 2


def test_visualize_samples_needs_a_guidance_that_samples() -> None:
    with pytest.raises(ConfigError, match="visualize_samples"):
        load_experiment(
            "prolificdreamer-geometry",
            ["system.geometry_convert_from=", "system.visualize_samples=true"],
            prompt="a red torus",
        )
