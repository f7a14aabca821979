"""The SJC system: its training loss, and validation/test images decoded by the VAE alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from studio.config.resolve import load_experiment
from studio.data.random_camera import RandomCameraDataModule
from studio_sjc.losses import emptiness_loss
from studio_sjc.system import SJCSystem


class MeanLatentGuidance:
    """A stand-in guidance: ``loss_sds`` is the mean of the rendered latents; records its input."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def __call__(self, rgb, prompt_utils, rgb_as_latents=False, **batch):
        self.calls.append((tuple(rgb.shape), rgb_as_latents))
        return {"loss_sds": rgb.mean(), "grad_norm": 0.0}


def sjc_system(*overrides: str, model: str = "primitives-sd") -> tuple[SJCSystem, dict]:
    resolved = load_experiment(
        "sjc-primitives",
        [
            "system.geometry.grid_size=[16,16,16]",
            "system.renderer.num_samples_per_ray=16",
            f"system.guidance.pretrained_model_name_or_path={model}",
            *overrides,
        ],
        prompt="a red cube",
    )
    parsed = resolved.parsed
    torch.manual_seed(0)
    system = SJCSystem(parsed["system"])
    data = dict(parsed["data"], width=16, height=16, eval_width=24, eval_height=24)
    return system, RandomCameraDataModule(data)


def test_loss_is_the_guidance_on_latents_plus_weighted_emptiness() -> None:
    system, data = sjc_system("system.loss.lambda_emptiness=100.0")
    guidance = MeanLatentGuidance()
    system.guidance, system.prompt_utils = guidance, None
    system.train()
    batch = data.train_batch()
    torch.manual_seed(1)  # the marching jitter
    out = system.training_step(batch)
    assert guidance.calls == [((1, 16, 16, 4), True)]  # 4-channel latents, used as latents
    torch.manual_seed(1)
    rendered = system.renderer(**batch)  # the same samples: the same emptiness
    expected = emptiness_loss(rendered["weights"], 10.0)
    assert out["loss_emptiness"].item() == pytest.approx(expected.item(), rel=1e-5)
    total = out["loss_sds"].item() + 100.0 * out["loss_emptiness"].item()
    assert out["loss"].item() == pytest.approx(total, rel=1e-5)
    out["loss"].backward()
    assert system.geometry.grid.grad.abs().sum() > 0
    assert system.geometry.density_scale.grad is not None  # learnable with a constant bias


def test_loss_terms_are_the_guidances_and_the_scene_losses() -> None:
    cfg = SJCSystem.Config(guidance_type="stable-diffusion")
    assert SJCSystem.loss_terms(cfg) == {"sds", "emptiness", "depth"}


@pytest.mark.parametrize("subpixel", [True, False])
def test_eval_images_are_decoded_by_the_vae_alone(
    tiny_sd_model: Path, tmp_path: Path, subpixel: bool
) -> None:
    """No UNet weights needed (deleted here); the decode runs at 2x (subpixel) or 1x the UNet's
    latent size and the decoded image is shown at the eval size, first column."""
    model = tmp_path / "model"
    shutil.copytree(tiny_sd_model, model)
    for weights in (model / "unet").glob("*.safetensors"):
        weights.unlink()
    system, data = sjc_system(
        f"system.subpixel_rendering={str(subpixel).lower()}", model=str(model)
    )
    system.eval()
    seen: list[tuple[int, ...]] = []
    columns = None
    with torch.no_grad():
        vae = system.decoder.vae
        decode = vae.decode
        vae.decode = lambda z, *a, **k: (seen.append(tuple(z.shape)), decode(z, *a, **k))[1]
        batch = data.test_batches()[0]
        columns = system.eval_columns(batch)
    unet_latent = 16  # the tiny model's UNet sample size
    assert seen == [(1, 4, 2 * unet_latent, 2 * unet_latent) if subpixel else (1, 4, 16, 16)]
    assert [c.shape for c in columns] == [(24, 24, 3)] * 3  # decoded RGB | opacity | depth
    assert columns[0].dtype.name == "uint8" and columns[0].std() > 0
