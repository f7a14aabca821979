"""``stable-diffusion-vsd`` on tiny random SD models: VSD gradients and the LoRA loss against
float64 hand math, LoRA training, trainable state, schedules and config errors."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import UNet2DConditionModel
from torch import nn

from studio.api import ConfigError, build_component, structure
from studio.config.experiment import OptimizerConfig
from studio.registry import get_registry
from studio.training.optim import parameter_groups
from studio_dreamfusion.prompts.output import PromptProcessorOutput
from studio_prolificdreamer.guidance.models import check_compatible
from studio_prolificdreamer.guidance.stable_diffusion_vsd import StableDiffusionVSDGuidance
from tests.plugins.prolificdreamer.guidance import reference as hand

CPU = torch.device("cpu")
B = 2
ELEVATION = torch.tensor([10.0, 75.0])  # front view, overhead view
AZIMUTH = torch.tensor([20.0, 180.0])
DISTANCE = torch.ones(B)
TIMESTEPS = torch.tensor([60, 870])
LORA_TIMESTEPS = torch.tensor([300, 950])
KEEP = torch.tensor([1.0, 0.0])  # the second sample's camera dropped
TOLERANCE = 5e-5  # float32 models vs float64 hand math, relative to the max (measured <= 6e-6)


def make_guidance(pretrained: Path, lora: Path, **cfg: Any) -> StableDiffusionVSDGuidance:
    return StableDiffusionVSDGuidance(
        {
            "pretrained_model_name_or_path": str(pretrained),
            "pretrained_model_name_or_path_lora": str(lora),
            **cfg,
        },
        device=CPU,
    )


def perturb_lora(guidance: StableDiffusionVSDGuidance, seed: int) -> None:
    """Random adapters (as if trained), so the LoRA UNet differs from its base."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in guidance.lora_layers.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=gen))


def fixed(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def call(guidance: StableDiffusionVSDGuidance, render: torch.Tensor, prompts: Any, c2w: Any):
    size = guidance.latent_size
    return guidance(
        render, prompts, ELEVATION, AZIMUTH, DISTANCE, c2w=c2w, rgb_as_latents=True,
        noise=fixed(B, 4, size, size, seed=1), timesteps=TIMESTEPS,
        lora_noise=fixed(B, 4, size, size, seed=2), lora_timesteps=LORA_TIMESTEPS,
        camera_keep=KEEP,
    )  # fmt: skip


# -- (1) the VSD gradient and the LoRA loss against float64 -----------------------------------


@pytest.mark.parametrize(
    ("lora_model", "scale_lora"),
    [("tiny_sd_v_model", 1.0), ("tiny_sd_v_model", 2.5), ("tiny_sd_model", 1.0)],
    ids=["v-lora", "v-lora-cfg", "single-model"],
)
def test_vsd_gradient_and_lora_loss_match_float64(
    request: pytest.FixtureRequest,
    tiny_sd_model: Path,
    prompts: PromptProcessorOutput,
    lora_model: str,
    scale_lora: float,
) -> None:
    lora_path = request.getfixturevalue(lora_model)
    guidance = make_guidance(tiny_sd_model, lora_path, guidance_scale_lora=scale_lora)
    assert guidance.models.single_model == (lora_path == tiny_sd_model)
    perturb_lora(guidance, seed=7)
    size = guidance.latent_size
    latents = fixed(B, 4, size, size, seed=0)
    c2w = fixed(B, 4, 4, seed=3)
    render = latents.permute(0, 2, 3, 1).clone().requires_grad_(True)
    out = call(guidance, render, prompts, c2w)
    out["loss_vsd"].backward(retain_graph=True)
    assert all(p.grad is None for p in guidance.trainable_parameters())  # VSD trains no LoRA

    models = guidance.models
    if models.single_model:  # the pretrained model is the UNet as saved, no adapter, no camera
        base = UNet2DConditionModel.from_pretrained(tiny_sd_model, subfolder="unet")
        pretrained = hand.HandUNet(base, models.scheduler)
    else:
        pretrained = hand.HandUNet(models.unet, models.scheduler)
    lora = hand.HandUNet(models.unet_lora, models.scheduler_lora)
    text_vd = prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE, True)
    text = prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE, False)[:B]
    camera = c2w.reshape(B, 16)
    grad = hand.vsd_grad(
        pretrained, lora, latents, fixed(B, 4, size, size, seed=1), TIMESTEPS, text_vd, text,
        camera, 7.5, scale_lora,
    )  # fmt: skip
    actual = render.grad.permute(0, 3, 1, 2)
    assert hand.relative_error(actual, grad / B) < TOLERANCE
    # SDS's CFG form (eps_c + s (eps_c - eps_u) = diffusers' form at s + 1) is clearly off
    sds_form = hand.vsd_grad(
        pretrained, lora, latents, fixed(B, 4, size, size, seed=1), TIMESTEPS, text_vd, text,
        camera, 8.5, scale_lora,
    )  # fmt: skip
    assert hand.relative_error(actual, sds_form / B) > 20 * TOLERANCE
    assert abs(out["loss_vsd"].item() / float(0.5 * (grad**2).sum() / B) - 1) < 1e-4
    assert abs(float(out["grad_norm"]) / float(grad.norm()) - 1) < 1e-4
    assert (out["min_step"], out["max_step"]) == (20, 980)

    expected_lora = hand.lora_loss(
        lora, latents, fixed(B, 4, size, size, seed=2), LORA_TIMESTEPS, text, camera, KEEP
    )
    assert abs(out["loss_lora"].item() / expected_lora - 1) < 1e-6  # measured <= 2.3e-8
    # the LoRA loss trains the adapters and the camera embedding, never the scene
    assert torch.autograd.grad(out["loss_lora"], render, allow_unused=True) == (None,)
    out["loss_lora"].backward()
    assert all(p.grad is not None for p in guidance.trainable_parameters())


# -- (3) the LoRA learns -----------------------------------------------------------------------


def test_lora_steps_lower_the_lora_loss(
    tiny_sd_model: Path, tiny_sd_v_model: Path, prompts: PromptProcessorOutput
) -> None:
    torch.manual_seed(0)
    guidance = make_guidance(tiny_sd_model, tiny_sd_v_model)
    size = guidance.latent_size
    batch = {
        "latents": fixed(B, 4, size, size, seed=0),
        "text": prompts.get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE, False)[:B],
        "camera": fixed(B, 16, seed=3),
        "noise": fixed(B, 4, size, size, seed=2),
        "timesteps": LORA_TIMESTEPS,
        "camera_keep": torch.ones(B),
    }
    optimizer = torch.optim.AdamW(guidance.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = guidance.lora_loss(**batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    losses.append(guidance.lora_loss(**batch).item())
    # measured: 1.149 -> 1.069 (-7%), falling at every step
    assert losses[-1] < 0.95 * losses[0], losses
    assert all(b < a for a, b in itertools.pairwise(losses)), losses


# -- (4) trainable state: LoRA + camera embedding only, restored exactly --------------------


def test_trainable_state_is_the_lora_and_the_camera_embedding(
    tiny_sd_model: Path, tiny_sd_v_model: Path, prompts: PromptProcessorOutput
) -> None:
    torch.manual_seed(0)
    guidance = make_guidance(tiny_sd_model, tiny_sd_v_model)
    assert set(guidance.trainable_modules()) == {"lora", "camera_embedding"}
    state = guidance.trainable_state_dict()
    width = 32  # the tiny UNet's time-embedding width (Stable Diffusion's would be 1280)
    camera_keys = {f"camera_embedding.linear_{i}.{k}" for i in (1, 2) for k in ("weight", "bias")}
    assert camera_keys <= set(state)
    assert state["camera_embedding.linear_1.weight"].shape == (width, 16)
    lora_keys = set(state) - camera_keys
    assert lora_keys and all(k.startswith("lora.adapters.") for k in lora_keys)
    assert all(k.endswith((".down.weight", ".up.weight")) for k in lora_keys)

    unet = guidance.models.unet_lora
    attention_projections = [
        (m.in_features, m.out_features)
        for name, m in unet.named_modules()
        if name.endswith(("to_q.base_layer", "to_k.base_layer", "to_v.base_layer"))
        or name.endswith("to_out.0.base_layer")
    ]
    assert len(lora_keys) == 2 * len(attention_projections)
    lora_values = sum(4 * (i + o) for i, o in attention_projections)
    camera_values = 16 * width + width + width * width + width
    assert sum(v.numel() for v in state.values()) == lora_values + camera_values
    # no base weight: no saved tensor shares storage with a frozen UNet/VAE parameter
    frozen = [unet, guidance.models.unet, guidance.models.vae]
    frozen_ptrs = {p.data_ptr() for m in frozen for p in m.parameters() if not p.requires_grad}
    assert frozen_ptrs and not frozen_ptrs & {v.data_ptr() for v in state.values()}
    base_values = sum(p.numel() for p in unet.parameters() if not p.requires_grad)
    assert sum(v.numel() for v in state.values()) < base_values / 5

    # optimizer group "guidance" (lr 1e-4 in the presets) holds exactly these parameters
    holder = nn.Module()
    holder.guidance = guidance
    cfg = structure({"name": "AdamW", "params": {"guidance": {"lr": 1e-4}}}, OptimizerConfig)
    (group,) = parameter_groups(holder, cfg)
    assert group["name"] == "guidance" and group["lr"] == 1e-4
    assert {id(p) for p in group["params"]} == {id(p) for p in guidance.trainable_parameters()}


def test_trainable_state_round_trip_is_exact(
    tiny_sd_model: Path, tiny_sd_v_model: Path, prompts: PromptProcessorOutput
) -> None:
    torch.manual_seed(0)
    trained = make_guidance(tiny_sd_model, tiny_sd_v_model, guidance_scale_lora=2.0)
    perturb_lora(trained, seed=11)
    saved = {k: v.clone() for k, v in trained.trainable_state_dict().items()}
    torch.manual_seed(1)  # another initialisation
    resumed = make_guidance(tiny_sd_model, tiny_sd_v_model, guidance_scale_lora=2.0)
    size = trained.latent_size
    render = fixed(B, 4, size, size, seed=0).permute(0, 2, 3, 1)
    c2w = fixed(B, 4, 4, seed=3)
    assert (
        call(resumed, render, prompts, c2w)["loss_lora"]
        != call(trained, render, prompts, c2w)["loss_lora"]
    )
    resumed.load_trainable_state_dict(saved)
    a, b = call(trained, render, prompts, c2w), call(resumed, render, prompts, c2w)
    assert torch.equal(a["loss_vsd"], b["loss_vsd"]) and torch.equal(a["loss_lora"], b["loss_lora"])


# -- schedules, registration ----------------------------------------------------------------


def test_max_step_schedule(tiny_sd_model: Path) -> None:
    guidance = make_guidance(tiny_sd_model, tiny_sd_model)
    assert guidance.cfg.max_step_percent == [5000, 0.98, 0.5, 5001]
    steps = {}
    for step in (0, 5000, 5001, 25000):
        guidance.update_step(0, step)
        steps[step] = (guidance.min_step, guidance.max_step)
    assert steps == {0: (20, 980), 5000: (20, 980), 5001: (20, 500), 25000: (20, 500)}


def test_registered_and_built_by_name(tiny_sd_model: Path) -> None:
    assert "stable-diffusion-vsd" in get_registry().names("guidance")
    guidance = build_component(
        "guidance", "stable-diffusion-vsd",
        {"pretrained_model_name_or_path": str(tiny_sd_model),
         "pretrained_model_name_or_path_lora": str(tiny_sd_model)},
        "system.guidance", device=CPU,
    )  # fmt: skip
    assert isinstance(guidance, StableDiffusionVSDGuidance)
    assert (guidance.cfg.guidance_scale, guidance.cfg.guidance_scale_lora) == (7.5, 1.0)
    assert guidance.cfg.lora_rank == 4 and guidance.cfg.lora_n_timestamp_samples == 1


# -- (5) bad config values: one paragraph naming key, value and fix -------------------------


BAD_VALUES = [
    ({"lora_n_timestamp_samples": 0}, ["system.guidance.lora_n_timestamp_samples", "at least 1"]),
    ({"lora_rank": -4}, ["system.guidance.lora_rank", "at least 1", "got -4"]),
    (
        {"camera_condition_type": "intrinsics"},
        ["system.guidance.camera_condition_type", "'intrinsics'", "'extrinsics', 'mvp'"],
    ),
    ({"guidance_scale_lora": ".nan"}, ["system.guidance.guidance_scale_lora"]),
    ({"max_step_percent": [5000, 0.98, 1.5, 5001]}, ["max_step_percent=[5000", "[0, 1]"]),
    (
        {"min_step_percent": 0.6},
        ["max_step_percent=[5000, 0.98, 0.5, 5001]", "min_step_percent=0.6", "step 5001"],
    ),
    (
        {"pretrained_model_name_or_path_lora": "m", "compile": "default"},
        ["system.guidance.compile='default'", "set system.guidance.compile=none"],
    ),
    ({"lora_rnak": 8}, ["system.guidance.lora_rnak", "did you mean 'system.guidance.lora_rank'"]),
]


@pytest.mark.parametrize(("overrides", "fragments"), BAD_VALUES)
def test_bad_config_values_are_explained(overrides: dict[str, Any], fragments: list[str]) -> None:
    values = {"pretrained_model_name_or_path": "m", **overrides}
    if values.get("guidance_scale_lora") == ".nan":
        values["guidance_scale_lora"] = float("nan")
    cls = StableDiffusionVSDGuidance
    with pytest.raises(ConfigError) as info:
        cls.validate_config(structure(values, cls.Config, "system.guidance"), "system.guidance")
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_lora_model_of_another_family_is_refused(tiny_sd_model: Path) -> None:
    guidance = make_guidance(tiny_sd_model, tiny_sd_model)
    other = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=24,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
    )  # fmt: skip
    key = "system.guidance.pretrained_model_name_or_path_lora"
    with pytest.raises(ConfigError) as info:
        check_compatible(guidance.models, other, guidance.models.scheduler, key)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{key}: the LoRA's base model has 24 text-embedding width")
    assert "pretrained model has 32" in message and f"set {key} to" in message


def test_a_lora_model_that_predicts_samples_is_refused(tiny_sd_model: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "sample-model"
    shutil.copytree(tiny_sd_model, folder)
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"epsilon"', '"sample"'))
    with pytest.raises(ConfigError) as info:
        make_guidance(tiny_sd_model, folder)
    message = str(info.value)
    assert "system.guidance.pretrained_model_name_or_path_lora" in message
    assert "prediction_type='sample'" in message and "\n" not in message


def test_missing_camera_is_explained(tiny_sd_model: Path, prompts: PromptProcessorOutput) -> None:
    guidance = make_guidance(tiny_sd_model, tiny_sd_model, camera_condition_type="mvp")
    render = torch.zeros(B, 16, 16, 4)
    with pytest.raises(ValueError, match=r"conditions on mvp_mtx .*camera_condition_type='mvp'"):
        guidance(
            render, prompts, ELEVATION, AZIMUTH, DISTANCE, rgb_as_latents=True,
            c2w=torch.eye(4).expand(B, 4, 4),
        )  # fmt: skip
