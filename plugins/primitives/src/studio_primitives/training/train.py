"""Train a primitives diffusion model (SD or IF form) from freshly generated data.

``studio primitives train --form sd|if --out DIR --steps N --batch B --seed S`` (or
``python -m studio_primitives.training.train ...``)

1. Renders ``--n-images`` samples with :func:`studio_primitives.data.generate` (kept in memory),
   or reads a data set written by ``studio primitives data`` (``--data DIR``: every image of it;
   render once, train both forms).
2. SD form only: trains the ``AutoencoderKL`` for ``--vae-steps`` (MSE reconstruction, a tiny KL
   term, the colour anchor of :func:`colour_anchor` and the Jacobian anchor of
   :func:`jacobian_anchor`), then sets ``vae.config.scaling_factor``
   to ``1 / std`` of the training latents, so scaled latents have unit variance as in Stable
   Diffusion. The anchors keep the encoder close to a linear function of the local colour, as
   Stable Diffusion's own latents are: SDS back-propagates through the encoder, and without them
   the small encoder learned a code in which the pull-back of a latent colour change was pixel
   noise whose mean colour had the wrong sign (docs/primitives.md).
3. Trains the UNet and the text encoder jointly (AdamW, bf16 autocast on CUDA, EMA of the weights
   saved) on the epsilon-prediction MSE at uniform timesteps; 10% of captions are replaced by the
   empty prompt, whose embedding is the unconditional one classifier-free guidance (and the prompt
   processors' negative prompt) uses. The text encoder starts random and is trained, not frozen.
   IF form: the UNet's 6 output channels are epsilon (3) and the learned variance range (3); the
   variance channels are regressed to ``+1`` (variance = ``beta_t``, DDPM's "fixed large" choice)
   instead of IF's variational-bound loss -- the SDS guidance uses only epsilon.
4. Writes ``loss.csv`` (``phase, step, loss``), ``samples.png`` (one row per prompt, DDIM with
   classifier-free guidance) and ``accuracy.json`` (the shipped classifier's accuracy on those
   samples, overall and per prompt; SD form: also ``encoder_colour_pullback``, the check of
   :func:`studio_primitives.models.encoder_check.colour_pullback`) into ``--log-dir`` (default
   ``DIR-training`` next to ``DIR``).
5. Saves the pipeline with ``save_pretrained`` as fp16 safetensors into a staging folder that is
   renamed to ``DIR`` at the end: ``DIR`` is complete or absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from studio.api import ConfigError
from studio_dreamfusion.quiet import quiet_loading
from studio_primitives.data import PAIRS, generate
from studio_primitives.models.architectures import (
    IFFormConfig,
    SDFormConfig,
    build_if_form,
    build_sd_form,
    trainable_modules,
)
from studio_primitives.models.encoder_check import colour_pullback, vae_means
from studio_primitives.training.dataset import read_dataset

FORMS = ("sd", "if")

#: Images denoised together when sampling (bounds the attention memory of large grids).
SAMPLE_CHUNK = 32


@attrs.define(kw_only=True)
class TrainConfig:
    """Everything one training run depends on (see the module doc)."""

    form: str
    out: Path
    steps: int = 15000
    batch: int = 64
    seed: int = 0
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    n_images: int = 3840
    vae_steps: int = 3000
    vae_batch: int = 64
    lr: float = 3e-4
    vae_lr: float = 1e-3
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    #: Exponential moving average of the UNet and text-encoder weights (saved instead of the raw
    #: weights); the decay ramps up as ``min(ema_decay, (1 + step) / (10 + step))``; 0 disables.
    ema_decay: float = 0.999
    vae_kl_weight: float = 1e-6
    #: Min-SNR-gamma weighting of the denoiser's loss (Hang et al. 2023): each sample's epsilon
    #: MSE times ``min(SNR_t, gamma) / SNR_t``, which keeps the many easy low-noise steps from
    #: dominating (the global shape forms at high noise); ``None``: uniform weights.
    snr_gamma: Optional[float] = None
    #: Weight of :func:`colour_anchor` in the autoencoder's loss (0: reconstruction alone).
    vae_anchor_weight: float = 1.0
    #: Weight of :func:`jacobian_anchor` in the autoencoder's loss (0: values anchored only).
    vae_jacobian_weight: float = 10.0
    sample_steps: int = 30
    guidance_scale: float = 5.0
    samples_per_prompt: int = 4
    #: Prompts of the sample grid; ``None``: every (shape, colour) pair with ``", front view"``.
    sample_prompts: Optional[list[str]] = None
    log_dir: Optional[Path] = None
    log_every: int = 50
    #: Wall-clock seconds for the whole run after which the denoiser stops early (then samples
    #: and saves as usual); ``None``: run every step. Fits training into a time-limited machine.
    time_budget_s: Optional[float] = None
    #: A saved pipeline to continue training instead of random weights (``--vae-steps 0`` keeps
    #: an SD pipeline's autoencoder as it is).
    init: Optional[Path] = None
    #: A data set folder written by ``studio primitives data`` to train on (all of its
    #: images; ``n_images`` and ``seed`` do not apply to it); ``None``: render ``n_images``.
    data: Optional[Path] = None
    #: Model sizes; ``None``: the form's default config.
    model: Optional[SDFormConfig | IFFormConfig] = None

    def check(self) -> None:
        """Raise :class:`ConfigError` for values no run can use."""
        if self.form not in FORMS:
            raise ConfigError(f"--form must be one of {', '.join(FORMS)}; got {self.form!r}.")
        if self.steps < 1 or self.batch < 1 or self.n_images < 1:
            raise ConfigError(
                f"--steps, --batch and --n-images must be >= 1; got steps={self.steps}, "
                f"batch={self.batch}, n_images={self.n_images}."
            )
        if self.snr_gamma is not None and self.snr_gamma <= 0:
            raise ConfigError(f"--snr-gamma must be > 0 (e.g. 5); got {self.snr_gamma}.")
        if Path(self.out).exists():
            raise ConfigError(f"{self.out} already exists; remove it or choose another --out.")


# -- data ---------------------------------------------------------------------------------------


def load_data(n: int, seed: int, size: int) -> tuple[torch.Tensor, list[str]]:
    """Images ``[n, 3, size, size]`` in [-1, 1] and their captions, from data set ``seed``."""
    images, captions = [], []
    started = time.time()
    for index, sample in enumerate(generate(n, seed, size)):
        images.append(torch.from_numpy(sample.image))
        captions.append(sample.caption)
        if (index + 1) % 1000 == 0:
            print(f"data: {index + 1}/{n} images ({time.time() - started:.1f} s)", flush=True)
    return to_pixels(torch.stack(images)), captions


def read_data(folder: Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """Every image ``[N, 3, size, size]`` in [-1, 1] and caption of a written data set; raises
    :class:`ConfigError` when its images are not ``size x size`` (the model's resolution)."""
    images, captions = read_dataset(folder)
    if images.shape[1:3] != (size, size):
        raise ConfigError(
            f"--data {folder} holds {images.shape[2]}x{images.shape[1]} images but the model "
            f"trains on {size}x{size}; write the data set with --size {size}."
        )
    return to_pixels(torch.from_numpy(images)), captions


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` -> float ``[N, 3, H, W]`` in [-1, 1]."""
    return (images.permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()


def default_prompts() -> list[str]:
    """``"a {colour} {shape}, front view"`` for every pair, in data order."""
    return [f"a {color} {shape}, front view" for shape, color in PAIRS]


# -- text ---------------------------------------------------------------------------------------


def tokenize(pipe: Any, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input ids, attention mask)``, each ``[B, 77]``, padded as the prompt processors pad."""
    tokenizer = pipe.tokenizer
    tokens = tokenizer(
        list(captions),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return tokens.input_ids, tokens.attention_mask


def encode_tokens(
    pipe: Any, form: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Text embeddings ``[B, 77, D]`` of tokenized captions (on the text encoder's device):
    CLIP sees the ids only, T5 the ids and the attention mask, as in the prompt processors."""
    if form == "sd":
        return pipe.text_encoder(input_ids)[0]
    return pipe.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]


def encode_text(
    pipe: Any, form: str, captions: Sequence[str], device: torch.device
) -> torch.Tensor:
    """Text embeddings ``[B, 77, D]`` exactly as the form's prompt processor computes them."""
    ids, mask = tokenize(pipe, captions)
    return encode_tokens(pipe, form, ids.to(device), mask.to(device))


# -- schedule -----------------------------------------------------------------------------------


def lr_factor(step: int, warmup: int, total: int, time_progress: float = 0.0) -> float:
    """Linear warm-up then cosine decay to 10%; the decay follows whichever is further along,
    the steps or ``time_progress`` (the fraction of a time budget spent)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), time_progress)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def snr_weights(alphas_cumprod: torch.Tensor, gamma: Optional[float]) -> torch.Tensor:
    """Per-sample loss weights ``min(SNR, gamma) / SNR`` with ``SNR = a / (1 - a)`` (ones when
    ``gamma`` is ``None``)."""
    if gamma is None:
        return torch.ones_like(alphas_cumprod)
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    # min(snr, gamma) / snr without 0/0 at a zero SNR (the last step of some schedules)
    return torch.where(snr > gamma, gamma / snr.clamp(min=gamma), torch.ones_like(snr))


def denoiser_loss(
    out: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: Optional[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logged, total)`` losses of UNet outputs ``out`` for ``noise`` ``[B, C, H, W]``: the
    unweighted epsilon MSE (comparable across runs), and the optimised loss: the epsilon MSE per
    sample times :func:`snr_weights`, plus for extra output channels (IF's variance range) 0.1
    times their MSE to ``+1`` (variance ``beta_t``)."""
    channels = noise.shape[1]
    per_sample = (out[:, :channels] - noise).pow(2).mean(dim=(1, 2, 3))
    total = (per_sample * snr_weights(alphas_cumprod, gamma)).mean()
    if out.shape[1] > channels:
        extra = out[:, channels:]
        total = total + 0.1 * F.mse_loss(extra, torch.ones_like(extra))
    return per_sample.mean(), total


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA, nothing elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# -- training phases ----------------------------------------------------------------------------


#: Latent channels of :func:`colour_anchor` as rows over (r, g, b): the colour itself, then its mean.
ANCHOR_MIX = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1 / 3, 1 / 3, 1 / 3))


def anchor_map(x: torch.Tensor, latent_size: int) -> torch.Tensor:
    """Images (or image changes) ``[N, 3, H, W]`` average-pooled to ``latent_size`` and mixed by
    :data:`ANCHOR_MIX`: the linear encoder ``[N, 4, latent_size, latent_size]`` the anchor aims at."""
    pooled = F.avg_pool2d(x.float(), x.shape[-1] // latent_size)
    mix = torch.tensor(ANCHOR_MIX, device=x.device)
    return torch.einsum("kc,nchw->nkhw", mix, pooled)


def colour_anchor(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of posterior ``means`` ``[N, 4, h, w]`` from :func:`anchor_map` of
    images ``x`` (``[N, 3, H, W]`` in [-1, 1]). Pulled to it, the encoder's values follow the local
    colour, and latent details ride on small residuals."""
    anchor = anchor_map(x, means.shape[-1])[:, : means.shape[1]]
    return F.mse_loss(means.float(), anchor)


#: Step of the finite difference in :func:`jacobian_anchor` (pixels in [-1, 1]).
JACOBIAN_STEP = 0.05


def jacobian_anchor(
    vae: Any, x: torch.Tensor, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Monte-Carlo estimate of ``||J - A||_F^2`` (per latent element) for the encoder's Jacobian
    ``J`` at images ``x`` and the linear map ``A`` of :func:`anchor_map`: for Gaussian ``d``,
    ``E|(mean(x + s d) - mean(x)) / s - A d|^2`` with the step ``s`` of :data:`JACOBIAN_STEP`.

    The colour anchor fixes the encoder's values only; SDS back-propagates through its transposed
    Jacobian, which this term keeps close to ``A^T`` (spread a latent change over its pixels), so
    a latent colour change pulls back to that colour rather than to pixel noise. Computed in fp32
    (outside any autocast): a bf16 finite difference would be mostly rounding."""
    d = torch.randn(x.shape, generator=generator, device=x.device)
    with torch.autocast(x.device.type, enabled=False):
        base = vae.encode(x.float()).latent_dist.mean
        moved = vae.encode(x.float() + JACOBIAN_STEP * d).latent_dist.mean
    jd = (moved - base) / JACOBIAN_STEP
    return F.mse_loss(jd, anchor_map(d, jd.shape[-1])[:, : jd.shape[1]])


def train_vae(
    vae: Any, pixels: torch.Tensor, cfg: TrainConfig, device: torch.device, log: list[tuple]
) -> None:
    """Fit the autoencoder (MSE + ``vae_kl_weight`` KL + ``vae_anchor_weight`` colour anchor +
    ``vae_jacobian_weight`` Jacobian anchor) and set its ``scaling_factor``."""
    vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    for step in range(cfg.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.vae_lr * lr_factor(step, cfg.warmup_steps, cfg.vae_steps)
        index = torch.randint(0, len(pixels), (cfg.vae_batch,))
        x = pixels[index].to(device)
        with autocast(device):
            posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(recon.float(), x)
        loss = mse + cfg.vae_kl_weight * posterior.kl().mean()
        if cfg.vae_anchor_weight > 0:
            loss = loss + cfg.vae_anchor_weight * colour_anchor(x, posterior.mean)
        if cfg.vae_jacobian_weight > 0:
            loss = loss + cfg.vae_jacobian_weight * jacobian_anchor(vae, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg.log_every == 0 or step == cfg.vae_steps - 1:
            log.append(("vae", step, mse.item()))
        if step % (10 * cfg.log_every) == 0 or step == cfg.vae_steps - 1:
            print(f"vae step {step}/{cfg.vae_steps} mse {mse.item():.5f}", flush=True)
    vae.eval().requires_grad_(False)
    means, _ = latent_moments(vae, pixels, device)
    std = float(means.float().std())
    vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))


@torch.no_grad()
def latent_moments(
    vae: Any, pixels: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std ``[N, 4, h, w]`` of every image (the VAE is frozen from here on)."""
    means, stds = [], []
    for i in range(0, len(pixels), 256):
        dist = vae.encode(pixels[i : i + 256].to(device)).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def train_denoiser(
    pipe: Any,
    cfg: TrainConfig,
    data: torch.Tensor,
    data_std: Optional[torch.Tensor],
    captions: list[str],
    device: torch.device,
    log: list[tuple],
    deadline: Optional[float] = None,
) -> None:
    """Epsilon-prediction MSE on the UNet and text encoder (see the module doc); stops at
    ``deadline`` (a ``time.time()`` value) when given, with the learning rate's cosine decay
    stretched over the time left, so a run cut short by its budget still ends at a low rate."""
    unet, text_encoder, scheduler = pipe.unet, pipe.text_encoder, pipe.scheduler
    unet.train().requires_grad_(True)
    text_encoder.train().requires_grad_(True)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    alphas = scheduler.alphas_cumprod.to(device)
    scale = float(pipe.vae.config.scaling_factor) if cfg.form == "sd" else 1.0
    ema = [p.detach().clone() for p in params] if cfg.ema_decay > 0 else []
    # every caption tokenized once; row len(captions) is the empty (unconditional) caption
    all_ids, all_masks = (t.to(device) for t in tokenize(pipe, [*captions, ""]))
    empty = len(captions)
    started = time.time()
    for step in range(cfg.steps):
        now = time.time()
        if deadline is not None and now > deadline:
            print(f"time budget reached: stopping the denoiser at step {step}", flush=True)
            break
        time_progress = (
            (now - started) / max(deadline - started, 1e-9) if deadline is not None else 0.0
        )
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg.warmup_steps, cfg.steps, time_progress)
        index = torch.randint(0, len(data), (cfg.batch,))
        x0 = data[index].to(device)
        if data_std is not None:
            x0 = x0 + data_std[index].to(device) * torch.randn_like(x0)
        x0 = x0 * scale
        dropped = torch.rand(cfg.batch) < cfg.caption_dropout
        rows = torch.where(dropped, torch.full_like(index, empty), index).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch,), device=device)
        noise = torch.randn_like(x0)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1.0 - a).sqrt() * noise
        with autocast(device):
            embeddings = encode_tokens(pipe, cfg.form, all_ids[rows], all_masks[rows])
            out = unet(noisy, t, encoder_hidden_states=embeddings).sample.float()
        loss, total = denoiser_loss(out, noise, a.view(-1), cfg.snr_gamma)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if ema:
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.append(("unet", step, loss.item()))
            rate = (step + 1) / max(time.time() - started, 1e-9)
            print(
                f"unet step {step}/{cfg.steps} loss {loss.item():.4f} ({rate:.1f} it/s)", flush=True
            )
    if ema:
        with torch.no_grad():
            for param, average in zip(params, ema, strict=True):
                param.copy_(average)
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)


# -- sampling -----------------------------------------------------------------------------------


@torch.no_grad()
def sample_images(
    pipe: Any, cfg: TrainConfig, prompts: Sequence[str], device: torch.device, seed: int
) -> torch.Tensor:
    """Images ``[len(prompts) * samples_per_prompt, 3, H, W]`` in [0, 1]: DDIM with CFG, without
    clipping the predicted clean image (only the final images are clamped). With IF's cosine
    schedule the first of 30 steps is t=957, where the clean-image estimate divides the epsilon
    error by sqrt(alpha_bar) = 0.065; clipping that estimate to [-1, 1] decided the layout from a
    saturated blob, and the IF form's samples lost their shapes (cube prompts: 0.125 with
    clipping, 0.94 without, same weights and noise)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, clip_sample=False, thresholding=False
    )
    scheduler.set_timesteps(cfg.sample_steps)
    repeated = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    cond = encode_text(pipe, cfg.form, repeated, device)
    uncond = encode_text(pipe, cfg.form, [""], device).expand_as(cond)
    if cfg.form == "sd":
        channels, size = 4, int(pipe.unet.config.sample_size)
    else:
        channels, size = 3, int(pipe.unet.config.sample_size)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn((len(repeated), channels, size, size), generator=generator)
    images = []
    for start in range(0, len(repeated), SAMPLE_CHUNK):
        x = noise[start : start + SAMPLE_CHUNK].to(device)
        text = torch.cat([cond[start : start + SAMPLE_CHUNK], uncond[start : start + len(x)]])
        for t in scheduler.timesteps:  # DDIM's step is stateless: chunks are independent
            eps = pipe.unet(torch.cat([x, x]), t.to(device), encoder_hidden_states=text).sample
            eps_cond, eps_uncond = eps[:, :channels].float().chunk(2)
            eps = eps_uncond + cfg.guidance_scale * (eps_cond - eps_uncond)
            x = scheduler.step(eps, t, x).prev_sample
        if cfg.form == "sd":
            x = pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample
        images.append((x.float() * 0.5 + 0.5).clamp(0.0, 1.0).cpu())
    return torch.cat(images)


def sample_accuracy(
    images: torch.Tensor, prompts: Sequence[str], samples_per_prompt: int, model: Any = None
) -> dict[str, Any]:
    """Classifier accuracy of sampled ``images`` (``[len(prompts) * samples_per_prompt, 3, H, W]``
    in [0, 1], prompt-major) against each prompt's shape and colour: overall and per prompt
    (``model``: a loaded classifier; default the shipped one)."""
    from studio_primitives.classifier import predict
    from studio_primitives.evaluation import prompt_target

    predictions = predict(images.permute(0, 2, 3, 1), model)
    per_prompt: dict[str, float] = {}
    for i, prompt in enumerate(prompts):
        target, reason = prompt_target(prompt)
        if target is None:
            raise ConfigError(reason)
        chunk = predictions[i * samples_per_prompt : (i + 1) * samples_per_prompt]
        per_prompt[prompt] = sum(p == target for p in chunk) / len(chunk)
    overall = sum(per_prompt.values()) / max(1, len(per_prompt))
    return {"accuracy": overall, "samples_per_prompt": samples_per_prompt, "per_prompt": per_prompt}


def save_grid(images: torch.Tensor, columns: int, path: Path) -> None:
    """Images ``[N, 3, H, W]`` in [0, 1] as a PNG grid of ``columns`` columns (row-major)."""
    n, _, h, w = images.shape
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    pixels = (images.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = pixels[i]
    Image.fromarray(grid).save(path)


# -- saving -------------------------------------------------------------------------------------


@quiet_loading()
def load_pipeline(form: str, folder: Path) -> Any:
    """A saved pipeline of ``form`` in float32, to continue training it (``--init``)."""
    from diffusers import IFPipeline, StableDiffusionPipeline

    if not (folder / "unet").is_dir():
        raise ConfigError(f"--init {folder} is not a saved {form} pipeline (it has no unet/).")
    extra = {"watermarker": None} if form == "if" else {}
    cls = StableDiffusionPipeline if form == "sd" else IFPipeline
    pipe = cls.from_pretrained(
        folder, safety_checker=None, feature_extractor=None, requires_safety_checker=False, **extra
    )
    for module in trainable_modules(pipe).values():
        module.to(torch.float32)
    return pipe


@quiet_loading()
def save_pipeline(pipe: Any, folder: Path) -> Path:
    """``save_pretrained`` as fp16 safetensors into a staging folder renamed to ``folder``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for module in trainable_modules(pipe).values():
            module.to("cpu", torch.float16)
        pipe.save_pretrained(staging, safe_serialization=True)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def write_log(rows: list[tuple], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["phase", "step", "loss"])
        writer.writerows(rows)


# -- the run ------------------------------------------------------------------------------------


def train(cfg: TrainConfig) -> Path:
    """Run every phase of the module doc; returns the saved pipeline folder."""
    cfg.check()
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    log_dir = Path(cfg.log_dir) if cfg.log_dir else out.parent / f"{out.name}-training"
    log_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.init is not None:
        pipe = load_pipeline(cfg.form, Path(cfg.init))
        image_size = int(pipe.unet.config.sample_size)
        if cfg.form == "sd":
            image_size *= 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    elif cfg.form == "sd":
        pipe = build_sd_form(cfg.model or SDFormConfig())
        image_size = pipe.vae.config.sample_size
    else:
        pipe = build_if_form(cfg.model or IFFormConfig())
        image_size = pipe.unet.config.sample_size
    pipe.to(device)
    if device.type == "cuda":  # fixed shapes: let cuDNN pick its kernels; TF32 outside autocast
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.time()
    if cfg.data is not None:
        pixels, captions = read_data(Path(cfg.data), int(image_size))
        print(
            f"read {len(captions)} images from {cfg.data} in {time.time() - started:.1f} s",
            flush=True,
        )
    else:
        pixels, captions = load_data(cfg.n_images, cfg.seed, int(image_size))
        print(f"generated {len(captions)} images in {time.time() - started:.1f} s", flush=True)
    log: list[tuple] = []
    encoder_report: Optional[dict[str, Any]] = None
    if cfg.form == "sd":
        if cfg.vae_steps > 0:
            train_vae(pipe.vae, pixels, cfg, device, log)
        else:  # a continued run keeps its autoencoder and scaling factor
            pipe.vae.eval().requires_grad_(False)
        data, data_std = latent_moments(pipe.vae, pixels, device)
        encoder_report = colour_pullback(vae_means(pipe.vae), int(image_size), device=device)
        print(f"encoder colour pull-back: {json.dumps(encoder_report)}", flush=True)
    else:
        data, data_std = pixels.to(device), None
    deadline = started + cfg.time_budget_s if cfg.time_budget_s else None
    train_denoiser(pipe, cfg, data, data_std, captions, device, log, deadline)
    print(f"trained in {time.time() - started:.1f} s", flush=True)
    write_log(log, log_dir / "loss.csv")
    prompts = cfg.sample_prompts if cfg.sample_prompts is not None else default_prompts()
    if prompts:
        images = sample_images(pipe, cfg, prompts, device, cfg.seed)
        save_grid(images, cfg.samples_per_prompt, log_dir / "samples.png")
        accuracy = sample_accuracy(images, prompts, cfg.samples_per_prompt)
        if encoder_report is not None:
            accuracy["encoder_colour_pullback"] = encoder_report
        (log_dir / "accuracy.json").write_text(json.dumps(accuracy, indent=1), encoding="utf-8")
        print(f"classifier accuracy of the samples: {accuracy['accuracy']:.3f}", flush=True)
    return save_pipeline(pipe, out)


def model_config(
    form: str, unet_channels: Optional[str], plain_levels: Optional[int]
) -> Optional[SDFormConfig | IFFormConfig]:
    """The form's default model config with the command line's UNet changes; ``None`` if none."""
    if unet_channels is None and plain_levels is None:
        return None
    config = SDFormConfig() if form == "sd" else IFFormConfig()
    if unet_channels is not None:
        try:
            config.unet_channels = tuple(int(c) for c in unet_channels.split(","))
        except ValueError:
            raise ConfigError(
                f"--unet-channels must be comma-separated integers like 32,64,96,128; got "
                f"{unet_channels!r}."
            ) from None
    if plain_levels is not None:
        if form == "sd":
            raise ConfigError("--plain-levels applies to the IF form only.")
        config.plain_levels = plain_levels
    return config


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``studio primitives train``: parse ``argv`` and train; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="studio primitives train",
        description="Train a primitives diffusion model (SD or IF form) and save its pipeline.",
    )
    defaults = TrainConfig(form="sd", out=Path("unused"))
    parser.add_argument("--form", required=True, choices=FORMS)
    parser.add_argument("--out", required=True, type=Path, help="pipeline folder to create")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--n-images", type=int, default=defaults.n_images)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--vae-anchor-weight", type=float, default=defaults.vae_anchor_weight)
    parser.add_argument("--vae-jacobian-weight", type=float, default=defaults.vae_jacobian_weight)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument(
        "--snr-gamma", type=float, default=None, help="min-SNR loss weighting (default: uniform)"
    )
    parser.add_argument(
        "--unet-channels",
        default=None,
        help="new model only: UNet channels per level, e.g. 32,64,96,128 (default: the form's)",
    )
    parser.add_argument(
        "--plain-levels",
        type=int,
        default=None,
        help="new model only: leading UNet levels without attention (default: the form's)",
    )
    parser.add_argument("--sample-steps", type=int, default=defaults.sample_steps)
    parser.add_argument("--guidance-scale", type=float, default=defaults.guidance_scale)
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument(
        "--init", type=Path, default=None, help="saved pipeline to continue training"
    )
    parser.add_argument(
        "--time-budget", type=float, default=None, help="seconds; the denoiser stops early"
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="data set folder to train on instead of rendering"
    )
    args = parser.parse_args(argv)
    try:
        cfg = TrainConfig(
            snr_gamma=args.snr_gamma,
            model=model_config(args.form, args.unet_channels, args.plain_levels),
            form=args.form,
            out=args.out,
            steps=args.steps,
            batch=args.batch,
            seed=args.seed,
            device=args.device,
            n_images=args.n_images,
            vae_steps=args.vae_steps,
            vae_anchor_weight=args.vae_anchor_weight,
            vae_jacobian_weight=args.vae_jacobian_weight,
            lr=args.lr,
            sample_steps=args.sample_steps,
            guidance_scale=args.guidance_scale,
            log_dir=args.log_dir,
            time_budget_s=args.time_budget,
            init=args.init,
            data=args.data,
        )
        folder = train(cfg)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"saved the {args.form} pipeline to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
