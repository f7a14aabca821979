"""Primitives SD / IF pipelines: word-level tokenizers, training, loading by the production code.

The module trains both forms at toy sizes (16x16, a few CPU steps) once, then loads the saved folders
exactly as a run would: the ``stable-diffusion`` / ``deep-floyd`` guidance and prompt processor.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from studio.errors import ConfigError
from studio_dreamfusion.guidance.deep_floyd import DeepFloydGuidance
from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance
from studio_dreamfusion.prompts.deep_floyd import DeepFloydPromptProcessor
from studio_dreamfusion.prompts.stable_diffusion import StableDiffusionPromptProcessor
from studio_primitives.data import generate
from studio_primitives.models.architectures import (
    SIZE_BUDGET_BYTES,
    IFFormConfig,
    SDFormConfig,
    build_if_form,
    build_sd_form,
    fp16_bytes,
)
from studio_primitives.models.vocabulary import (
    MAX_LENGTH,
    WORDS,
    build_clip_tokenizer,
    build_t5_tokenizer,
)
from studio_primitives.training.train import (
    TrainConfig,
    encode_text,
    lr_factor,
    sample_accuracy,
    train,
)

CPU = torch.device("cpu")
SIZE = 16
VAE_STEPS = 3
UNET_STEPS = 3
SAMPLE_PROMPTS = ["a red cube, front view", "a blue sphere, side view"]
TINY = {
    "sd": SDFormConfig(
        image_size=SIZE,
        text_dim=32,
        unet_channels=(16, 32),
        unet_attention_head_dim=8,
        vae_channels=(8, 16),
        norm_groups=8,
        vae_norm_groups=8,
    ),
    "if": IFFormConfig(
        image_size=SIZE,
        text_dim=32,
        unet_channels=(16, 32),
        unet_attention_head_dim=8,
        plain_levels=1,
        norm_groups=8,
    ),
}


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: these toy models are 10x slower with threads on a busy 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"sd": folder, "if": folder}`` trained for a few toy steps (logs in ``<folder>-training``)."""
    root = tmp_path_factory.mktemp("primitives-models")
    folders = {}
    for form, model in TINY.items():
        cfg = TrainConfig(
            form=form,
            out=root / form,
            steps=UNET_STEPS,
            batch=4,
            n_images=8,
            vae_steps=VAE_STEPS,
            vae_batch=4,
            warmup_steps=1,
            sample_steps=2,
            samples_per_prompt=1,
            sample_prompts=SAMPLE_PROMPTS,
            log_every=1,
            model=model,
            device="cpu",
        )
        folders[form] = train(cfg)
    return folders


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``$STUDIO_CACHE_DIR`` (text-embedding cache) for one test."""
    folder = tmp_path / "studio-cache"
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(folder))
    return folder


def render() -> torch.Tensor:
    """A fixed random render ``[2, 24, 24, 3]`` in [0, 1] that wants gradients."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand((2, 24, 24, 3), generator=gen).requires_grad_(True)


ELEVATION = torch.tensor([10.0, 75.0])
AZIMUTH = torch.tensor([20.0, 180.0])
DISTANCE = torch.ones(2)


# -- tokenizers ---------------------------------------------------------------------------------


def test_clip_tokenizer_maps_every_word_to_one_token() -> None:
    tokenizer = build_clip_tokenizer()
    assert tokenizer.model_max_length == MAX_LENGTH
    for word in (*WORDS, ","):
        ids = tokenizer(word).input_ids
        assert len(ids) == 3, (word, tokenizer.convert_ids_to_tokens(ids))  # bos, word, eos
        assert tokenizer.convert_ids_to_tokens(ids[1]) == word + "</w>"
    ids = tokenizer("a red cube, front view").input_ids
    assert len(ids) == 2 + 6
    assert len(set(tokenizer(list(WORDS)).input_ids[i][1] for i in range(len(WORDS)))) == len(WORDS)


def test_t5_tokenizer_maps_every_word_to_one_token() -> None:
    tokenizer = build_t5_tokenizer()
    assert tokenizer.model_max_length == MAX_LENGTH
    unk = tokenizer.unk_token_id
    for word in WORDS:
        ids = tokenizer(word).input_ids
        assert len(ids) == 2 and ids[-1] == tokenizer.eos_token_id, (word, ids)
        assert ids[0] != unk
    ids = tokenizer("a red cube, front view").input_ids  # "," follows a word: its own token
    tokens = ["\u2581a", "\u2581red", "\u2581cube", ",", "\u2581front", "\u2581view", "</s>"]
    assert tokenizer.convert_ids_to_tokens(ids) == tokens
    assert len(set(tokenizer(list(WORDS)).input_ids[i][0] for i in range(len(WORDS)))) == len(WORDS)


# -- size budget --------------------------------------------------------------------------------


def test_default_forms_fit_the_size_budget() -> None:
    total = fp16_bytes(build_sd_form()) + fp16_bytes(build_if_form())
    assert 10 * 2**20 < total <= SIZE_BUDGET_BYTES, total / 2**20


# -- training outputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["sd", "if"])
def test_saved_folder_is_fp16_safetensors_of_counted_size(
    trained: dict[str, Path], form: str
) -> None:
    folder = trained[form]
    assert not list(folder.rglob("*.bin")) and (folder / "model_index.json").is_file()
    files = sorted(folder.rglob("*.safetensors"))
    expected = {"text_encoder", "unet"} | ({"vae"} if form == "sd" else set())
    assert {f.parent.name for f in files} == expected
    n_values, n_bytes = 0, 0
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                assert tensor.dtype == torch.float16, (path, key, tensor.dtype)
                n_values += tensor.numel()
        n_bytes += path.stat().st_size
    build = build_sd_form if form == "sd" else build_if_form
    counted = fp16_bytes(build(TINY[form]))
    # on disk: the counted parameters (+ a few saved buffers such as CLIP's position ids) + headers
    assert counted <= 2 * n_values <= counted * 1.05
    assert 2 * n_values < n_bytes < 2 * n_values + 64 * 1024


@pytest.mark.parametrize("form", ["sd", "if"])
def test_training_logs_every_step_and_writes_a_sample_grid(
    trained: dict[str, Path], form: str
) -> None:
    logs = trained[form].parent / f"{form}-training"
    with open(logs / "loss.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    phases = [r["phase"] for r in rows]
    vae_rows = VAE_STEPS if form == "sd" else 0
    assert phases == ["vae"] * vae_rows + ["unet"] * UNET_STEPS
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    # epsilon MSE of an untrained UNet is about the noise variance, 1
    assert 0.3 < float(rows[vae_rows]["loss"]) < 3.0
    with Image.open(logs / "samples.png") as grid:
        assert grid.size == (SIZE, SIZE * len(SAMPLE_PROMPTS))
    accuracy = json.loads((logs / "accuracy.json").read_text(encoding="utf-8"))
    assert list(accuracy["per_prompt"]) == SAMPLE_PROMPTS
    assert 0.0 <= accuracy["accuracy"] <= 1.0
    assert accuracy["accuracy"] == sum(accuracy["per_prompt"].values()) / len(SAMPLE_PROMPTS)


def test_sample_check_scores_a_saved_pipeline_with_given_weights(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from studio_primitives.classifier import (
        ShapeColorClassifier,
        default_weights_path,
        save_classifier,
    )
    from studio_primitives.training.sample_check import check

    sampling = {"sample_prompts": SAMPLE_PROMPTS, "sample_steps": 2, "samples_per_prompt": 2}
    shipped = check(trained["if"], "if", tmp_path / "a", default_weights_path(), **sampling)
    again = check(trained["if"], "if", tmp_path / "b", None, **sampling)
    assert shipped["per_prompt"] == again["per_prompt"] and shipped["classifier"] != "shipped"
    assert json.loads((tmp_path / "a" / "accuracy.json").read_text()) == shipped
    with Image.open(tmp_path / "a" / "samples.png") as grid:
        assert grid.size == (2 * SIZE, SIZE * len(SAMPLE_PROMPTS))
    # a classifier whose colour head always answers "black" scores none of the prompts' colours
    torch.manual_seed(0)
    blind = ShapeColorClassifier()
    with torch.no_grad():
        blind.color_head.weight.zero_()
        blind.color_head.bias.copy_(torch.tensor([0.0] * 7 + [10.0]))
    weights = save_classifier(blind, tmp_path / "blind.safetensors")
    assert check(trained["if"], "if", tmp_path / "c", weights, **sampling)["accuracy"] == 0.0


def test_sampling_does_not_clip_the_clean_image_estimate(
    trained: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # clipping the x0 estimate at IF's first DDIM step (t=957 of a cosine schedule) cost the
    # shipped IF form most of its shapes (cube prompts 0.125 -> 0.94 without it)
    import diffusers

    from studio_primitives.training.train import load_pipeline, sample_images

    seen = []
    original = diffusers.DDIMScheduler.from_config.__func__

    def spy(cls, config, **kwargs):
        scheduler = original(cls, config, **kwargs)
        seen.append((scheduler.config.clip_sample, scheduler.config.thresholding))
        return scheduler

    monkeypatch.setattr(diffusers.DDIMScheduler, "from_config", classmethod(spy))
    pipe = load_pipeline("if", trained["if"])
    cfg = TrainConfig(form="if", out=Path("unused"), sample_steps=2, samples_per_prompt=1)
    images = sample_images(pipe, cfg, SAMPLE_PROMPTS[:1], torch.device("cpu"), 0)
    assert seen == [(False, False)]
    assert images.shape[0] == 1 and 0.0 <= float(images.min()) <= float(images.max()) <= 1.0


def test_sample_accuracy_scores_each_prompt_against_its_shape_and_colour() -> None:
    renders = [
        next(s for s in generate(48, 3) if (s.shape, s.color) == pair)
        for pair in [("cube", "red"), ("sphere", "blue")]
    ]
    images = torch.stack(
        [torch.from_numpy(r.image).permute(2, 0, 1).float() / 255 for r in renders]
    )
    right = sample_accuracy(images, ["a red cube", "a blue sphere"], 1)
    assert right["per_prompt"] == {"a red cube": 1.0, "a blue sphere": 1.0}
    swapped = sample_accuracy(images, ["a blue sphere", "a red cube"], 1)
    assert swapped["accuracy"] == 0.0
    with pytest.raises(ConfigError, match="Known shapes"):
        sample_accuracy(images, ["a hamburger", "a red cube"], 1)


def test_denoiser_training_lowers_the_epsilon_loss(tmp_path: Path) -> None:
    """100 steps on 8 images: the epsilon MSE falls from about 0.9 to about 0.2 (IF form)."""
    cfg = TrainConfig(
        form="if",
        out=tmp_path / "if",
        steps=100,
        batch=8,
        n_images=8,
        warmup_steps=5,
        lr=3e-3,
        ema_decay=0.0,
        sample_prompts=[],
        log_every=1,
        model=TINY["if"],
        device="cpu",
    )
    train(cfg)
    with open(tmp_path / "if-training" / "loss.csv", encoding="utf-8") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert first > 0.6 and last < 0.4 * first, (first, last)


def test_sd_vae_scaling_factor_gives_unit_variance_latents(trained: dict[str, Path]) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(trained["sd"], subfolder="vae", torch_dtype=torch.float32)
    images = torch.stack([torch.from_numpy(s.image) for s in generate(8, 0, SIZE)])
    pixels = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        posterior = vae.encode(pixels).latent_dist
    latents = posterior.mean * vae.config.scaling_factor
    assert vae.config.scaling_factor != pytest.approx(0.18215)
    assert float(latents.std()) == pytest.approx(1.0, abs=0.02)
    # the posterior noise is small next to the spread of the latents (samples ~ means)
    assert float(posterior.std.mean()) * vae.config.scaling_factor < 0.1


def test_train_rejects_unknown_form_and_existing_out(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--form"):
        train(TrainConfig(form="xl", out=tmp_path / "new"))
    with pytest.raises(ConfigError, match="already exists"):
        train(TrainConfig(form="sd", out=tmp_path))


# -- loading through the production guidance ----------------------------------------------------


@pytest.mark.parametrize("form", ["sd", "if"])
def test_processor_embeddings_equal_the_training_conditioning(
    trained: dict[str, Path], cache_dir: Path, form: str
) -> None:
    """The guidance sees exactly the conditioning the UNet was trained on (caption and "")."""
    from diffusers import DiffusionPipeline

    folder = str(trained[form])
    processor_class = StableDiffusionPromptProcessor if form == "sd" else DeepFloydPromptProcessor
    processor = processor_class(
        {"pretrained_model_name_or_path": folder, "prompt": "a red cube"}, device=CPU
    )
    embeddings = processor().get_text_embeddings(ELEVATION, AZIMUTH, DISTANCE)
    pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        expected = encode_text(
            pipe, form, ["a red cube, front view", "a red cube, overhead view", "", ""], CPU
        )
    assert embeddings.shape == expected.shape
    # The SD processor loads CLIP in the folder's dtype (transformers' dtype="auto": fp16 here)
    # and so encodes in fp16 on CPU too; the IF processor asks for fp32 on CPU.
    tolerance = 1e-2 if form == "sd" else 1e-5
    assert float((embeddings.float() - expected).abs().max()) < tolerance
    assert float((expected[0] - expected[2]).abs().max()) > 1e-3  # caption != unconditional


def test_sd_folder_drives_the_stable_diffusion_guidance(
    trained: dict[str, Path], cache_dir: Path
) -> None:
    folder = str(trained["sd"])
    processor = StableDiffusionPromptProcessor(
        {"pretrained_model_name_or_path": folder, "prompt": "a red cube"}, device=CPU
    )
    guidance = StableDiffusionGuidance({"pretrained_model_name_or_path": folder}, device=CPU)
    assert (guidance.image_size, guidance.latent_size) == (SIZE, SIZE // 2)
    rgb = render()
    out = guidance(rgb, processor(), ELEVATION, AZIMUTH, DISTANCE)
    assert torch.isfinite(out["loss_sds"]) and out["loss_sds"].item() > 0
    out["loss_sds"].backward()
    assert torch.isfinite(rgb.grad).all() and float(rgb.grad.abs().max()) > 0
    assert any(cache_dir.rglob("*")), "embeddings must be cached under $STUDIO_CACHE_DIR"


def test_if_folder_drives_the_deep_floyd_guidance(
    trained: dict[str, Path], cache_dir: Path
) -> None:
    folder = str(trained["if"])
    processor = DeepFloydPromptProcessor(
        {"pretrained_model_name_or_path": folder, "prompt": "a red cube"}, device=CPU
    )
    guidance = DeepFloydGuidance({"pretrained_model_name_or_path": folder}, device=CPU)
    assert guidance.image_size == SIZE
    rgb = render()
    out = guidance(rgb, processor(), ELEVATION, AZIMUTH, DISTANCE)
    assert torch.isfinite(out["loss_sds"]) and out["loss_sds"].item() > 0
    out["loss_sds"].backward()
    assert torch.isfinite(rgb.grad).all() and float(rgb.grad.abs().max()) > 0
    assert any(cache_dir.rglob("*")), "embeddings must be cached under $STUDIO_CACHE_DIR"


def test_time_budget_stops_the_denoiser_early_and_still_saves(tmp_path: Path) -> None:
    """A run on a time-limited machine ends with a saved pipeline instead of nothing."""
    cfg = TrainConfig(
        form="if",
        out=tmp_path / "if",
        steps=100_000,
        batch=2,
        n_images=4,
        warmup_steps=1,
        sample_prompts=[],
        log_every=1,
        model=TINY["if"],
        device="cpu",
        time_budget_s=1e-9,  # already spent once the data is generated
    )
    folder = train(cfg)
    with open(tmp_path / "if-training" / "loss.csv", encoding="utf-8") as f:
        assert [r for r in csv.DictReader(f) if r["phase"] == "unet"] == []
    assert (folder / "unet").is_dir()


def test_learning_rate_decays_with_steps_or_spent_time_budget() -> None:
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)  # warm-up
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100) == pytest.approx(0.1)
    # half the budget spent at step 10 of 100: halfway down the cosine
    assert lr_factor(10, 10, 100, time_progress=0.5) == pytest.approx(0.55)
    assert lr_factor(10, 10, 100, time_progress=1.0) == pytest.approx(0.1)


@pytest.mark.parametrize("form", ["sd", "if"])
def test_init_continues_training_a_saved_pipeline(
    trained: dict[str, Path], form: str, tmp_path: Path
) -> None:
    """``--init`` starts from the saved weights (SD: the autoencoder is kept with --vae-steps 0)."""
    from diffusers import IFPipeline, StableDiffusionPipeline

    cls = StableDiffusionPipeline if form == "sd" else IFPipeline
    before = cls.from_pretrained(trained[form], safety_checker=None, requires_safety_checker=False)
    cfg = TrainConfig(
        form=form,
        out=tmp_path / form,
        init=trained[form],
        steps=1,
        batch=2,
        n_images=4,
        vae_steps=0,
        warmup_steps=1,
        sample_prompts=[],
        log_every=1,
        device="cpu",
    )
    after = cls.from_pretrained(train(cfg), safety_checker=None, requires_safety_checker=False)
    assert after.unet.config.block_out_channels == before.unet.config.block_out_channels
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(after.unet.parameters(), before.unet.parameters(), strict=True)
    ]
    assert 0 < max(moved) < 0.05  # one small step away from the saved weights, not a fresh init
    if form == "sd":
        assert after.vae.config.scaling_factor == before.vae.config.scaling_factor
        vae_same = all(
            torch.equal(a, b)
            for a, b in zip(after.vae.parameters(), before.vae.parameters(), strict=True)
        )
        assert vae_same


def test_init_rejects_a_folder_without_a_unet(tmp_path: Path) -> None:
    cfg = TrainConfig(form="if", out=tmp_path / "out", init=tmp_path, sample_prompts=[])
    with pytest.raises(ConfigError, match="no unet"):
        train(cfg)


def test_training_reads_a_written_data_set(tmp_path: Path) -> None:
    """``--data DIR`` trains on the folder ``studio primitives data`` wrote."""
    from studio_primitives.training.dataset import write_dataset

    data = write_dataset(tmp_path / "data", n=3, seed=5, size=SIZE)
    cfg = TrainConfig(
        form="if",
        out=tmp_path / "if",
        data=data,
        steps=1,
        batch=2,
        warmup_steps=1,
        sample_prompts=[],
        log_every=1,
        model=TINY["if"],
        device="cpu",
    )
    assert (train(cfg) / "unet").is_dir()


def test_training_rejects_a_data_set_of_another_resolution(tmp_path: Path) -> None:
    from studio_primitives.training.dataset import write_dataset

    data = write_dataset(tmp_path / "data", n=1, seed=0, size=SIZE // 2)
    cfg = TrainConfig(
        form="if", out=tmp_path / "if", data=data, sample_prompts=[], model=TINY["if"], device="cpu"
    )
    with pytest.raises(ConfigError, match=f"--size {SIZE}"):
        train(cfg)


def test_colour_anchor_is_zero_for_pooled_colour_latents() -> None:
    import torch.nn.functional as F

    from studio_primitives.training.train import ANCHOR_MIX, colour_anchor

    x = torch.rand(2, 3, 8, 8) * 2 - 1
    pooled = F.avg_pool2d(x, 2)
    means = torch.einsum("kc,nchw->nkhw", torch.tensor(ANCHOR_MIX), pooled)
    assert float(colour_anchor(x, means)) < 1e-12
    assert float(colour_anchor(x, means + 0.1)) == pytest.approx(0.01)


class _LinearEncoder:
    """An "autoencoder" whose posterior mean is ``gain`` times the anchor map (plus a constant)."""

    def __init__(self, gain: float) -> None:
        self.gain = gain

    def encode(self, x: torch.Tensor) -> Any:
        from types import SimpleNamespace

        from studio_primitives.training.train import anchor_map

        mean = self.gain * anchor_map(x, x.shape[-1] // 2) + 0.3
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean))


def test_jacobian_anchor_measures_the_distance_of_the_encoder_jacobian_from_the_anchor_map() -> (
    None
):
    from studio_primitives.training.train import jacobian_anchor

    x = torch.rand(8, 3, 32, 32) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    assert float(jacobian_anchor(_LinearEncoder(1.0), x, generator)) < 1e-8
    # J = 2A: the term is E|A d|^2 per element; pooling 2x2 of unit noise has variance 1/4 in the
    # three colour channels and 1/12 in their mean
    expected = (3 * 0.25 + 0.25 / 3) / 4
    value = float(jacobian_anchor(_LinearEncoder(2.0), x, generator))
    assert value == pytest.approx(expected, rel=0.05)


def test_sd_training_reports_the_encoder_colour_check(trained: dict[str, Path]) -> None:
    report = json.loads((trained["sd"].parent / "sd-training" / "accuracy.json").read_text())
    check = report["encoder_colour_pullback"]
    assert set(check["mean_rgb"]) == {"red", "green", "blue"} and 0 <= check["aligned"] <= 1
    if_report = json.loads((trained["if"].parent / "if-training" / "accuracy.json").read_text())
    assert "encoder_colour_pullback" not in if_report  # no autoencoder in the IF form


def test_snr_weights_follow_min_snr_gamma() -> None:
    from studio_primitives.training.train import snr_weights

    a = torch.tensor([0.9, 0.5, 0.1])  # SNR 9, 1, 1/9
    assert torch.allclose(snr_weights(a, 5.0), torch.tensor([5.0 / 9.0, 1.0, 1.0]))
    assert torch.equal(snr_weights(a, None), torch.ones(3))
    assert torch.equal(snr_weights(torch.tensor([0.0]), 5.0), torch.ones(1))  # SNR 0: no 0/0
    with pytest.raises(ConfigError, match="--snr-gamma must be > 0"):
        TrainConfig(form="if", out=Path("unused"), snr_gamma=0.0).check()


def test_model_config_from_the_command_line() -> None:
    from studio_primitives.training.train import model_config

    assert model_config("if", None, None) is None
    config = model_config("if", "32,64,96,128", 2)
    assert config.unet_channels == (32, 64, 96, 128) and config.plain_levels == 2
    pipe = build_if_form(config)
    assert pipe.unet.config.down_block_types == (
        "DownBlock2D",
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    )
    assert pipe.unet.config.up_block_types[-2:] == ("UpBlock2D", "UpBlock2D")
    with pytest.raises(ConfigError, match="32,64,96,128"):
        model_config("if", "32;64", None)
    with pytest.raises(ConfigError, match="IF form only"):
        model_config("sd", None, 2)


def test_denoiser_loss_weights_epsilon_and_keeps_the_variance_term() -> None:
    from studio_primitives.training.train import denoiser_loss

    noise = torch.zeros(2, 3, 4, 4)
    out = torch.cat([torch.ones(2, 3, 4, 4), torch.full((2, 3, 4, 4), 3.0)], dim=1)  # IF: 6 ch
    a = torch.tensor([0.9, 0.1])  # SNR 9 (weight 5/9 at gamma 5) and 1/9 (weight 1)
    logged, total = denoiser_loss(out, noise, a, None)
    assert float(logged) == pytest.approx(1.0) and float(total) == pytest.approx(1.0 + 0.1 * 4.0)
    logged, total = denoiser_loss(out, noise, a, 5.0)
    assert float(logged) == pytest.approx(1.0)  # the logged loss stays unweighted
    assert float(total) == pytest.approx((5.0 / 9.0 + 1.0) / 2 + 0.1 * 4.0)
    logged, total = denoiser_loss(out[:, :3], noise, a, 5.0)  # SD: no variance channels
    assert float(total) == pytest.approx((5.0 / 9.0 + 1.0) / 2)
