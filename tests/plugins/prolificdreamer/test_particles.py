"""Several particles (``system.num_particles``): K scenes from their own seeds against one guidance.

Each particle is built from its own seed (particle 0 exactly as a one-particle run), every
optimizer group covers its part of every particle, and one training step gives each particle the
gradient a run of its own would get (the VSD term summed over particles, the LoRA's term shared).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from studio.api import ConfigError
from studio.cli.app import app
from studio.config.resolve import load_experiment
from studio.data.random_camera import RandomCameraDataModule
from studio.training.optim import build_optimizer, resolve_attribute
from studio_prolificdreamer.system import ProlificDreamerSystem, repeat_batch
from tests.in_process_cli import invoke, run_method

SMALL = (
    "system.geometry.pos_encoding_config.n_levels=4",
    "system.geometry.pos_encoding_config.log2_hashmap_size=12",
    "system.renderer.num_samples_per_ray=16",
    # deterministic renders: the gradient comparison below needs the same render twice
    "system.renderer.randomized=false",
    "system.background.random_aug=false",
)


class PerImageGuidance:
    """A stand-in for VSD: ``loss_vsd`` is a mean over the batch of a function of each image
    (as VSD's is), ``loss_lora`` a mean on the detached images (it trains only the guidance)."""

    def __call__(self, image, prompt_utils, rgb_as_latents=False, **batch):
        self.image, self.c2w = image.detach().clone(), batch["c2w"]
        per_image = (image - 0.3).square().mean(dim=(1, 2, 3))
        return {"loss_vsd": per_image.mean(), "loss_lora": image.detach().mean()}


def make_system(count: int, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    overrides = [*SMALL, f"system.num_particles={count}"]
    parsed = load_experiment("prolificdreamer", overrides, prompt="a red torus").parsed
    torch.manual_seed(seed)
    system = ProlificDreamerSystem(parsed["system"], resumed=False)
    system.guidance, system.prompt_utils = PerImageGuidance(), None
    data = dict(parsed["data"], width=16, height=16, batch_size=1, resolution_milestones=[])
    return system, RandomCameraDataModule(data).train_batch()


def parameters_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_particles_have_their_own_seeds_and_particle_zero_is_a_one_particle_run() -> None:
    alone, _ = make_system(1)
    system, _ = make_system(3)
    assert sorted(system.particles) == ["1", "2"]
    keys = system.state_dict().keys()
    assert any(k.startswith("geometry.") for k in keys)
    assert any(k.startswith("particles.2.geometry.") for k in keys)
    for a, b in zip(parameters_of(alone), parameters_of(system.geometry), strict=False):
        assert torch.equal(a, b)
    for part in ("geometry", "background"):
        first = parameters_of(getattr(system, part))
        for index in ("1", "2"):
            other = parameters_of(getattr(system.particles[index], part))
            assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True)), part
    # the same seed builds the same particles
    again, _ = make_system(3)
    for a, b in zip(system.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_optimizer_groups_cover_every_particle() -> None:
    system, _ = make_system(3)
    system.guidance = None  # its group (the LoRA) is the VSD guidance's own, tested there
    params = {k: v for k, v in system.cfg.optimizer.params.items() if k != "guidance"}
    optimizer = build_optimizer(system, attrs.evolve(system.cfg.optimizer, params=params))
    groups = {group["name"]: group["params"] for group in optimizer.param_groups}
    assert set(groups) == set(params)  # geometry.encoding, ..., background
    for name in params:
        owners = [system, *system.particles.values()]
        expected = [id(p) for owner in owners for p in resolve_attribute(owner, name).parameters()]
        assert [id(p) for p in groups[name]] == expected, name


def test_use_particle_swaps_parts_and_folder_and_restores_them() -> None:
    system, _ = make_system(2)
    geometry, renderer = system.geometry, system.renderer
    with system.use_particle(1):
        assert system.geometry is system.particles["1"].geometry
        assert system.renderer.geometry is system.geometry
        assert system.validation_image_name(3) == "particle-1/it0-3.png"
    assert system.geometry is geometry and system.renderer is renderer
    assert system.save_prefix == ""
    names = []
    for particle in system.particle_indices():
        with system.use_particle(particle):
            names.append(system.test_image_name(0))
    assert names == ["particle-0/it0-test/0.png", "particle-1/it0-test/0.png"]
    with system.use_particle(1), system.use_particle(0):  # nested: particle 0 back in place
        assert system.geometry is geometry and system.save_prefix == "particle-0/"
    with pytest.raises(RuntimeError), system.use_particle(1):
        raise RuntimeError("out of memory")  # an error inside: particle 0 is put back at once
    assert system.geometry is geometry and system.save_prefix == ""
    assert all(k.startswith("particles.1.") for k in system.state_dict() if "particles" in k)
    alone, _ = make_system(1)
    with alone.use_particle(0):
        assert alone.test_image_name(0) == "it0-test/0.png"


def test_each_particle_gets_the_gradient_of_its_own_run() -> None:
    system, batch = make_system(2)
    out = system.training_step(batch)
    stacked = system.guidance.image
    assert stacked.shape[0] == 2
    assert torch.equal(system.guidance.c2w, torch.cat([batch["c2w"]] * 2))
    out["loss"].backward()
    lora_losses = []
    for index, particle in enumerate([system, system.particles["1"]]):
        alone, _ = make_system(1)
        own = {
            name: tensor
            for name, tensor in particle.state_dict().items()
            if name.split(".")[0] in ("geometry", "material", "background")
        }
        missing, unexpected = alone.load_state_dict(own, strict=False)
        assert not unexpected and all(not k.startswith("geometry") for k in missing)
        alone_out = alone.training_step(batch)
        # particle k's render is at position k of the guidance's batch
        torch.testing.assert_close(stacked[index], alone.guidance.image[0])
        alone_out["loss"].backward()
        lora_losses.append(alone_out["loss_lora"])
        for name in ("geometry", "background"):
            for a, b in zip(
                getattr(particle, name).parameters(),
                getattr(alone, name).parameters(),
                strict=True,
            ):
                assert a.grad is not None and b.grad is not None
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)
    # the shared term is the mean over all particles' renders, not their sum
    torch.testing.assert_close(out["loss_lora"], torch.stack(lora_losses).mean())


def test_repeat_batch_stacks_the_batch_for_each_particle() -> None:
    batch = {"c2w": torch.rand(2, 4, 4), "height": 16, "scale": torch.tensor(1.0)}
    repeated = repeat_batch(batch, 3)
    assert repeated["c2w"].shape == (6, 4, 4)
    assert torch.equal(repeated["c2w"][4:], batch["c2w"])
    assert repeated["height"] == 16 and repeated["scale"] is batch["scale"]
    assert repeat_batch(batch, 1) is batch


def test_particle_counts_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"system.num_particles=0: give the number"):
        load_experiment("prolificdreamer", ["system.num_particles=0"], prompt="a red torus")
    with pytest.raises(ConfigError, match=r"system.num_particles=2: this system \(DreamFusion"):
        load_experiment("dreamfusion-sd", ["system.num_particles=2"], prompt="a red torus")


@pytest.mark.slow
def test_a_pipeline_of_two_particles_keeps_each_in_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prolificdreamer-primitives-full`` with K = 2 at a few steps per stage: every stage
    writes each particle's validation grid, test orbit and video under ``save/particle-<k>/``,
    each particle's geometry converts from its own source particle, the texture stage exports
    each, ``studio eval`` scores each with the mean and spread, and a stage asking for more
    particles than its source trained is refused."""
    run_dir = run_method(
        "prolificdreamer-primitives-full",
        "a red torus",
        tmp_path,
        monkeypatch,
        "system.num_particles=2",
        "data.n_test_views=2",
        "data.n_val_views=1",
        "coarse.trainer.max_steps=30",
        "coarse.trainer.val_check_interval=30",
        "geometry.trainer.max_steps=4",
        "geometry.trainer.val_check_interval=4",
        "texture.trainer.max_steps=4",
        "texture.trainer.val_check_interval=4",
    )
    stages = [run_dir / "stages" / name for name in ("1-coarse", "2-geometry", "3-texture")]
    for stage, steps in zip(stages, (30, 4, 4), strict=True):
        assert not list((stage / "save").glob("it*")), stage  # nothing outside the particles
        for k in (0, 1):
            save = stage / "save" / f"particle-{k}"
            assert (save / f"it{steps}-0.png").is_file(), save
            assert sorted(p.name for p in (save / f"it{steps}-test").iterdir()) == [
                "0.png",
                "1.png",
            ]
            assert (save / f"it{steps}-test.mp4").is_file(), save
    coarse_frames = [
        np.asarray(Image.open(stages[0] / "save" / f"particle-{k}" / "it30-test" / "0.png"))
        for k in (0, 1)
    ]
    assert not np.array_equal(*coarse_frames)  # two scenes, not one drawn twice
    for source, stage in itertools.pairwise(stages):
        record = yaml.safe_load((stage / "configs" / "conversion.yaml").read_text())
        assert Path(record["parent"]).resolve() == source.resolve() and record["particle"] == 0
        assert [r["particle"] for r in record["other_particles"]] == [1]
    # each particle's mesh came from its own NeRF: the two geometry stages start apart
    state = torch.load(stages[1] / "ckpts" / "last.ckpt", weights_only=False)["state_dict"]
    sdf = [state["geometry.sdf"], state["particles.1.geometry.sdf"]]
    assert not torch.equal(*sdf)
    # ... and the conversion levels were found for each NeRF separately (threshold auto)
    coarse = torch.load(stages[0] / "ckpts" / "last.ckpt", weights_only=False)["state_dict"]
    assert not torch.equal(
        coarse["geometry.encoding.params"],
        coarse["particles.1.geometry.encoding.params"],
    )
    for k in (0, 1):
        (export,) = (stages[2] / "save" / f"particle-{k}").glob("it*-export")
        assert (export / "model.obj").is_file()

    output = invoke("eval", str(run_dir), "-e", "primitives-r-precision")
    saved = json.loads((stages[2] / "save" / "eval.json").read_text())
    scores = [p["evaluators"]["primitives-r-precision"]["r_precision"] for p in saved["particles"]]
    mean = saved["evaluators"]["primitives-r-precision"]["r_precision"]
    assert len(scores) == 2 and mean == pytest.approx(sum(scores) / 2)
    assert saved["spread"]["primitives-r-precision"]["r_precision"]["max"] == max(scores)
    assert "mean over 2 particles: primitives-r-precision: r_precision" in output

    result = CliRunner().invoke(
        app,
        [
            "run",
            "prolificdreamer-geometry-primitives",
            "prompt=a red torus",
            f"exp_root_dir={tmp_path / 'more'}",
            f"system.geometry_convert_from={stages[0]}",
            "system.num_particles=3",
        ],
    )
    assert result.exit_code != 0
    assert "system.num_particles=3: system.geometry_convert_from=" in result.output
    assert "trained 2 particle(s)" in result.output
    assert not (tmp_path / "more").exists()

    parsed = (stages[0] / "configs" / "parsed.yaml").read_text()
    result = CliRunner().invoke(app, ["resume", str(stages[0]), "system.num_particles=3"])
    assert result.exit_code != 0
    assert "system.num_particles=3: this run trained 2 particle(s)" in result.output
    assert (stages[0] / "configs" / "parsed.yaml").read_text() == parsed
