"""Fantasia3D's two stages (reference §5.5): what reaches the guidance at each step of the geometry
stage, the texture stage's PBR render with gradients into the grid's feature field, the loss, and
when the shape initialisation runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

from studio.config.loading import dump_yaml
from studio.config.resolve import load_experiment
from studio.data.random_camera import RandomCameraDataModule
from studio.errors import ConfigError
from studio.training.checkpoint import save_checkpoint
from studio_fantasia3d.system import Fantasia3DSystem, normal_latents


class RecordingGuidance:
    """A stand-in guidance: ``loss_sds`` is the input's mean; records the calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, image, prompt_utils, rgb_as_latents=False, **batch):
        self.calls.append({"shape": tuple(image.shape), "rgb_as_latents": rgb_as_latents})
        return {"loss_sds": image.mean()}


def make_system(preset: str, *overrides: str, resumed: bool = False) -> tuple[Any, dict]:
    resolved = load_experiment(preset, list(overrides), prompt="a yellow cone")
    parsed = resolved.parsed
    torch.manual_seed(0)
    system = Fantasia3DSystem(parsed["system"], resumed=resumed)
    system.guidance, system.prompt_utils = RecordingGuidance(), None
    data = dict(parsed["data"], width=32, height=32)
    return system, RandomCameraDataModule(data).train_batch()


def geometry_system(*overrides: str, **kwargs: Any) -> tuple[Any, dict]:
    return make_system(
        "fantasia3d-primitives",
        "system.geometry_input=normal",
        "system.latent_steps=1000",
        "system.geometry.isosurface_resolution=16",
        "system.geometry.shape_init_steps=40",
        "system.geometry.shape_init_lr=0.01",
        *overrides,
        **kwargs,
    )


def texture_system(*overrides: str) -> tuple[Any, dict]:
    system, batch = make_system(
        "fantasia3d-texture-primitives",
        "system.geometry_convert_from=",
        "system.geometry_convert_inherit_colour=false",
        "system.geometry.isosurface_resolution=16",
        *overrides,
    )
    geometry = system.geometry
    with torch.no_grad():  # a sphere of radius 0.5
        geometry.sdf.copy_(geometry.grid_points().norm(dim=-1, keepdim=True) - 0.5)
    return system, batch


def test_normal_latents_are_the_scaled_normals_beside_the_silhouette() -> None:
    normal = torch.rand(2, 4, 4, 3)
    opacity = torch.rand(2, 4, 4, 1)
    latents = normal_latents(normal, opacity)
    assert latents.shape == (2, 4, 4, 4)
    assert torch.equal(latents[..., :3], normal * 2 - 1) and torch.equal(latents[..., 3:], opacity)


def test_a_lambert_geometry_stage_learns_its_colour_and_shape() -> None:
    system, batch = geometry_system("system.geometry_input=lambert", "system.latent_steps=0")
    system.initialize_shape_once()
    out = system.training_step(batch)
    assert system.guidance.calls == [{"shape": (1, 32, 32, 3), "rgb_as_latents": False}]
    out["loss"].backward()
    assert system.lambert_albedo.grad is not None and system.lambert_albedo.grad.abs().sum() > 0
    assert system.geometry.sdf_network.parameters().__next__().grad is not None
    normal_input, _ = geometry_system("system.geometry_input=normal")
    assert normal_input.lambert_albedo is None


def test_a_lambert_input_can_light_by_points_over_random_backgrounds() -> None:
    options = ("system.geometry_input=lambert", "system.latent_steps=0")
    system, batch = geometry_system(
        *options, "system.lambert_light=point", "system.lambert_background=random"
    )
    system.initialize_shape_once()
    out = system.render(batch)
    image, as_latents = system.guidance_input(out, batch)
    assert not as_latents and image.shape == (1, 32, 32, 3)
    corner = image[0, 0, 0]  # the sphere of radius 0.5 leaves the corners empty
    assert out["opacity"][0, 0, 0, 0] == 0
    assert (corner - torch.sigmoid(system.lambert_albedo.detach())).norm() >= 0.3
    assert torch.allclose(image[0, :2, :2].reshape(-1, 3), corner.expand(4, 3))
    fixed = ("system.lambert_light=distant", "system.lambert_background=grey")
    grey, _ = geometry_system(*options, *fixed)[0].guidance_input(out, batch)
    assert torch.allclose(grey[0, 0, 0], torch.full((3,), 0.5))
    columns = system.eval_columns(batch)  # what an evaluator scores: the Lambert render over grey
    assert len(columns) == 3 and columns[0][0, 0].tolist() == [128, 128, 128]
    lit_by_points = image[0][out["opacity"][0, ..., 0] == 1]
    lit_from_afar = grey[0][out["opacity"][0, ..., 0] == 1]
    assert not torch.allclose(lit_by_points, lit_from_afar, atol=1e-3)
    system.training_step(batch)["loss"].backward()
    assert system.lambert_albedo.grad is not None


def test_geometry_stage_sends_latents_first_then_the_normal_map_as_rgb() -> None:
    system, batch = geometry_system("system.latent_steps=3")
    assert system.initialize_shape_once()
    guidance = system.guidance
    for step in (0, 2, 3, 10):
        system.global_step = step
        out = system.training_step(batch)
        assert torch.isfinite(out["loss"])
    assert [call["rgb_as_latents"] for call in guidance.calls] == [True, True, False, False]
    assert [call["shape"][-1] for call in guidance.calls] == [4, 4, 3, 3]
    assert guidance.calls[0]["shape"][:3] == (1, 32, 32)

    out = system.training_step(batch)
    out["loss"].backward()
    grads = [p.grad for p in system.geometry.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_geometry_stage_renders_no_colour_and_shows_normals_and_silhouette() -> None:
    system, batch = geometry_system()
    assert system.material is None and system.background is None
    system.initialize_shape_once()
    out = system.render(batch)
    assert "comp_rgb" not in out and out["opacity"].sum() > 10
    columns = system.eval_columns(batch)
    assert len(columns) == 2


def test_texture_stage_shades_the_mesh_and_trains_the_feature_field() -> None:
    system, batch = texture_system("system.loss.lambda_normal_consistency=10.0")
    out = system.training_step(batch)
    (call,) = system.guidance.calls
    assert call == {"shape": (1, 32, 32, 3), "rgb_as_latents": False}
    mesh = system.geometry.isosurface()
    assert mesh.has_uv  # the fixed mesh was unwrapped once for the bump map's tangents
    expected = out["loss_sds"] + 10.0 * mesh.normal_consistency()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    texture = [p for n, p in system.geometry.named_parameters() if n.startswith("encoding")]
    assert texture and any(p.grad is not None and p.grad.abs().sum() > 0 for p in texture)
    assert not system.geometry.sdf.requires_grad  # fix_geometry: buffers


def test_shape_initialisation_runs_once_on_a_fresh_run_only() -> None:
    system, _ = geometry_system()
    assert system.initialize_shape_once()
    resumed, _ = geometry_system(resumed=True)
    assert not resumed.initialize_shape_once()
    # weights loaded by the constructor (a path is checked when the config is resolved)
    weighted, _ = geometry_system()
    weighted.cfg = attrs.evolve(weighted.cfg, weights="/some/run")
    assert not weighted.initialize_shape_once()
    weighted.geometry.cfg = attrs.evolve(weighted.geometry.cfg, force_shape_init=True)
    assert weighted.initialize_shape_once()
    texture, _ = texture_system()
    assert not texture.initialize_shape_once()


def test_the_stages_loss_terms_are_the_guidance_and_mesh_regularisers() -> None:
    cfg = Fantasia3DSystem.Config(guidance_type="stable-diffusion")
    assert Fantasia3DSystem.loss_terms(cfg) == {"sds", "normal_consistency", "laplacian_smoothness"}


def test_the_texture_albedo_can_start_from_a_colour() -> None:
    system, batch = texture_system()
    material = system.material
    zero_field = torch.zeros(2, 8)
    assert torch.allclose(material.channels(zero_field)["albedo"], torch.full((2, 3), 0.5))
    colour = torch.tensor([0.9, 0.8, 0.05])
    material.start_albedo_from(colour)
    assert torch.allclose(material.channels(zero_field)["albedo"], colour.expand(2, 3), atol=1e-6)
    assert torch.allclose(material.export(zero_field)["albedo"], colour.expand(2, 3), atol=1e-6)
    metallic = material.channels(zero_field)["metallic"]  # the other channels are unchanged
    assert torch.allclose(metallic, torch.full_like(metallic, 0.05))
    state = system.state_dict()
    assert "material.albedo_start" in state  # checkpointed: resume and export see it
    older, _ = texture_system()  # a checkpoint from before the start loads with a zero start
    older.material.start_albedo_from(torch.tensor([0.2, 0.2, 0.2]))
    older.load_state_dict({k: v for k, v in state.items() if k != "material.albedo_start"})
    assert torch.equal(older.material.albedo_start, torch.zeros(3))
    older.load_state_dict(state)
    assert torch.allclose(older.material.channels(zero_field)["albedo"], colour.expand(2, 3))
    out = system.training_step(batch)
    assert "material.albedo_start" not in dict(system.named_parameters())  # a start, not trained
    out["loss"].backward()  # the field trains as before on top of it
    texture = [p for n, p in system.geometry.named_parameters() if n.startswith("encoding")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in texture)

    other, _ = texture_system("system.material.material_activation=exp")
    with pytest.raises(ConfigError, match="material_activation='exp'"):
        other.material.start_albedo_from(colour)


def write_geometry_run(root: Path, geometry_input: str, albedo_logits: list[float]) -> Path:
    """A finished ``fantasia3d-primitives`` run as conversion reads it: its parsed config and a
    checkpoint of a sphere-initialised geometry stage whose Lambert colour is
    ``sigmoid(albedo_logits)`` (``geometry_input: lambert``; ignored for ``normal``)."""
    resolved = load_experiment(
        "fantasia3d-primitives",
        [
            f"system.geometry_input={geometry_input}",
            "system.geometry.isosurface_resolution=16",
            "system.geometry.shape_init_steps=40",
            "system.geometry.shape_init_lr=0.01",
        ],
        prompt="a yellow cone",
    )
    torch.manual_seed(0)
    system = Fantasia3DSystem(resolved.parsed["system"])
    system.initialize_shape_once()
    if system.lambert_albedo is not None:
        with torch.no_grad():
            system.lambert_albedo.copy_(torch.tensor(albedo_logits))
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "parsed.yaml").write_text(dump_yaml(resolved.parsed))
    save_checkpoint(
        root / "ckpts" / "last.ckpt", {"state_dict": system.state_dict(), "global_step": 40}
    )
    return root


def test_the_texture_stage_starts_from_the_geometry_stages_colour(tmp_path: Path) -> None:
    logits = [2.0, 1.5, -2.5]  # a yellow
    source = write_geometry_run(tmp_path / "geometry", "lambert", logits)
    convert = (f"system.geometry_convert_from={source}", "system.geometry.isosurface_resolution=16")
    system, _ = make_system("fantasia3d-texture-primitives", *convert)
    assert system.conversion is not None  # converted from the run
    assert torch.allclose(system.material.albedo_start, torch.tensor(logits), atol=1e-4)
    field = torch.zeros(1, 8)
    expected = torch.sigmoid(torch.tensor(logits))
    assert torch.allclose(system.material.channels(field)["albedo"][0], expected, atol=1e-5)
    resumed, _ = make_system("fantasia3d-texture-primitives", *convert, resumed=True)
    assert torch.equal(resumed.material.albedo_start, torch.zeros(3))  # the checkpoint's, later
    without, _ = make_system(
        "fantasia3d-texture-primitives", *convert, "system.geometry_convert_inherit_colour=false"
    )
    assert torch.equal(without.material.albedo_start, torch.zeros(3))


def test_starting_from_the_colour_needs_a_lambert_geometry_stage(tmp_path: Path) -> None:
    normal_run = write_geometry_run(tmp_path / "normal", "normal", [0.0, 0.0, 0.0])
    convert = f"system.geometry_convert_from={normal_run}"
    with pytest.raises(ConfigError, match="geometry_input is 'normal', not 'lambert'"):
        make_system("fantasia3d-texture-primitives", convert)
    # a pipeline's texture stage learns its source only when it starts: refused there too
    resolved = load_experiment(
        "fantasia3d-texture-primitives", ["system.geometry_convert_from="], prompt="a yellow cone"
    )
    system_cfg = dict(resolved.parsed["system"], geometry_convert_from=str(normal_run))
    with pytest.raises(ConfigError, match=r"studio resume RUN_DIR <stage>\.system\."):
        Fantasia3DSystem(system_cfg)
    for override, message in [
        ("system.material.material_activation=exp", r"material\.material_activation is 'exp'"),
        ("system.material_type=diffuse-with-point-light", "needs a material whose albedo"),
    ]:  # refused without a source too (before a pipeline's first stage runs)
        with pytest.raises(ConfigError, match=message):
            make_system("fantasia3d-texture-primitives", "system.geometry_convert_from=", override)
