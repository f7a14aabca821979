"""The Latent-NeRF / Sketch-Shape system: what it hands the guidance, its losses, its checks and
its decoded evaluation images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio.data.random_camera import RandomCameraDataModule
from studio.errors import ConfigError
from studio_latentnerf.shape_loss import GuideFields
from studio_latentnerf.system import LatentNeRFSystem

GRID = {"otype": "HashGrid", "n_levels": 4, "n_features_per_level": 2, "log2_hashmap_size": 12,
        "base_resolution": 4, "per_level_scale": 1.5}  # fmt: skip


def system_config(refinement: bool = False, **extra) -> dict:
    latent = not refinement
    return {
        "refinement": refinement,
        "geometry_type": "implicit-volume",
        "geometry": {
            "radius": 1.0,
            "n_feature_dims": 4,
            "normal_type": None,
            "pos_encoding_config": GRID,
        },
        "material_type": "no-material" if latent else "sd-latent-adapter",
        "material": {"n_output_dims": 4, "color_activation": "none"} if latent else {},
        "background_type": "neural-environment-map",
        "background": {"n_output_dims": 4, "color_activation": "none"} if latent else {},
        "renderer_type": "nerf-volume",
        "renderer": {"radius": 1.0, "num_samples_per_ray": 16, "backend": "torch"},
        "guidance_type": "stable-diffusion",  # its loss terms; the tests hand in a stand-in
        "guidance": {"pretrained_model_name_or_path": extra.pop("model", "primitives-sd")},
        "loss": {"lambda_sds": 1.0, "lambda_sparsity": 5e-4, **extra.pop("loss", {})},
        **extra,
    }


class RecordingGuidance:
    """A stand-in guidance: ``loss_sds`` is the render's mean; records what it was handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def __call__(self, rgb, prompt_utils, rgb_as_latents=False, **batch):
        self.calls.append((tuple(rgb.shape), rgb_as_latents))
        return {"loss_sds": rgb.mean(), "grad_norm": 0.0}


def built(cfg: dict) -> tuple[LatentNeRFSystem, RecordingGuidance, dict]:
    LatentNeRFSystem.validate_config(LatentNeRFSystem.Config(**cfg), "system")
    torch.manual_seed(0)
    system = LatentNeRFSystem(cfg)
    guidance = RecordingGuidance()
    system.guidance, system.prompt_utils = guidance, None
    system.guide_fields = system.build_guide_fields()
    system.train()
    data = RandomCameraDataModule({"width": 16, "height": 16, "batch_size": 1})
    return system, guidance, data.train_batch()


def test_latent_stage_hands_latents_and_adds_the_shape_loss() -> None:
    cfg = system_config(guide_shape="teddy", guide_shape_resolution=32, loss={"lambda_shape": 2.0})
    system, guidance, batch = built(cfg)
    torch.manual_seed(1)
    out = system.training_step(batch)
    assert guidance.calls == [((1, 16, 16, 4), True)]
    assert isinstance(system.guide_fields, GuideFields)
    torch.manual_seed(1)
    rendered = system.renderer(**batch)
    shape = system.guide_fields.loss(rendered["points"], rendered["density"])
    assert out["loss_shape"].item() == pytest.approx(shape.item(), rel=1e-5)
    expected = out["loss_sds"] + 5e-4 * out["loss_sparsity"] + 2.0 * out["loss_shape"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    grads = [p.grad for p in system.geometry.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_fixed_capacity_padding_is_left_out_of_the_shape_loss() -> None:
    """The captured path's fixed-capacity render: its padding samples (zero weight, but real
    points) must not enter the shape loss, which is the loss over the real samples alone."""
    renderer = {"radius": 1.0, "num_samples_per_ray": 16, "backend": "torch",
                "torch_sampling": "marching", "fixed_capacity": True}  # fmt: skip
    cfg = system_config(
        guide_shape="teddy", guide_shape_resolution=32, loss={"lambda_shape": 2.0},
        renderer=renderer,
    )  # fmt: skip
    system, _, batch = built(cfg)
    system.training_step(batch)  # sizes the buffers (its first march counts, then marches)
    torch.manual_seed(1)
    out = system.training_step(batch)
    torch.manual_seed(1)
    rendered = system.renderer(**batch)
    valid = rendered["sample_valid"]
    assert 0 < int(valid.sum()) < valid.numel()  # there is padding to leave out
    real = system.guide_fields.loss(rendered["points"][valid], rendered["density"][valid])
    everything = system.guide_fields.loss(rendered["points"], rendered["density"])
    assert out["loss_shape"].item() == pytest.approx(real.item(), rel=1e-5)
    assert abs(everything.item() - real.item()) > 1e-3 * abs(real.item())


@pytest.mark.parametrize("refinement", [False, True])
def test_both_stages_declare_their_host_state_for_captured_steps(refinement: bool) -> None:
    renderer = {"radius": 1.0, "num_samples_per_ray": 16, "backend": "torch",
                "fixed_capacity": True}  # fmt: skip
    system, _, _ = built(system_config(refinement=refinement, renderer=renderer))
    # on the CPU only the torch marching is left (CUDA marches with nerfacc)
    assert system.graph_blockers() == [
        "system.renderer marches with the torch backend, not nerfacc"
    ]


def test_refinement_renders_rgb_through_the_adapter_for_the_vae() -> None:
    system, guidance, batch = built(system_config(refinement=True))
    out = system.training_step(batch)
    assert guidance.calls == [((1, 16, 16, 3), False)]
    assert "loss_shape" not in out and system.guide_fields is None
    out["loss"].backward()
    assert system.material.matrix.grad.abs().sum() > 0


def test_a_shape_weight_needs_a_guide_and_a_guide_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lambda_shape.*needs a guide"):
        LatentNeRFSystem.validate_config(
            LatentNeRFSystem.Config(**system_config(loss={"lambda_shape": 1.0})), "system"
        )
    missing = str(tmp_path / "nothing.obj")
    with pytest.raises(ConfigError, match=r"system\.guide_shape=.*no such file"):
        LatentNeRFSystem.validate_config(
            LatentNeRFSystem.Config(**system_config(guide_shape=missing)), "system"
        )


def test_latent_stage_eval_decodes_through_the_vae(tiny_sd_model: Path) -> None:
    system, _, _ = built(system_config(model=str(tiny_sd_model)))
    system.guidance = None  # as in `studio test`: the VAE is loaded alone
    system.eval()
    data = RandomCameraDataModule({"eval_width": 24, "eval_height": 24, "n_test_views": 2})
    with torch.no_grad():
        columns = system.eval_columns(data.test_batches()[0])
    assert [c.shape for c in columns] == [(24, 24, 3)] * 2  # decoded RGB | opacity
    assert system.decoder.unet_latent_size == 16  # decoded at the UNet's size, no subpixel


def test_a_refinement_loading_a_latent_run_of_another_density_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The weights of a NeRF trained under one density bias mean another shape under another:
    loading them warns with both values (and stays silent when the two runs agree)."""
    from studio.config.convert import unstructure
    from studio.config.loading import dump_yaml
    from studio.training.checkpoint import save_checkpoint

    latent = LatentNeRFSystem(system_config())
    root = tmp_path / "latent-run"
    (root / "configs").mkdir(parents=True)
    parsed = {"method": "latentnerf", "system": unstructure(latent.cfg)}
    (root / "configs" / "parsed.yaml").write_text(dump_yaml(parsed))
    save_checkpoint(
        root / "ckpts" / "last.ckpt", {"global_step": 3, "state_dict": latent.state_dict()}
    )
    ignore = {"weights": str(root), "weights_ignore_modules": ["material", "background"]}

    LatentNeRFSystem(system_config(refinement=True, **ignore))
    assert "warning" not in capsys.readouterr().err

    other = system_config(refinement=True, **ignore)
    other["geometry"] = {**other["geometry"], "density_bias": "blob_dreamfusion"}
    LatentNeRFSystem(other)
    err = capsys.readouterr().err
    # compared with the geometry's defaults filled in: blob_magic3d is implicit-volume's
    assert (
        "system.geometry.density_bias: 'blob_magic3d' in the source run, 'blob_dreamfusion' here"
        in err
    )
    assert "density_blob_std" not in err  # the same default on both sides
