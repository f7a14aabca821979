"""``stable-diffusion-vsd`` guidance: ProlificDreamer's variational score distillation (§4.7.3).

A frozen pretrained Stable Diffusion (``pretrained_model_name_or_path``, epsilon-prediction
2.1-base by default) and a LoRA-adapted copy of a second one (``pretrained_model_name_or_path_lora``,
v-prediction 2.1 by default; the same UNet when the paths are equal) conditioned on the camera
through a class embedding. One call returns

* ``loss_vsd`` -- the VSD gradient ``(1 - abar_t) (eps_pretrained - eps_lora)`` on the renders'
  latents (reparameterised, so ``d loss_vsd / d z = grad / B``);
* ``loss_lora`` -- the LoRA's denoising loss on the detached latents (trains only the adapters
  and the camera embedding);
* ``grad_norm``, ``min_step``, ``max_step``.

The formulas are :mod:`.vsd`; the adapters :mod:`.lora`; the camera embedding :mod:`.camera`;
loading :mod:`.models`. Rendering to latents and the VRAM switches are ``stable-diffusion``'s.

It is a *trainable* guidance: :meth:`trainable_modules` holds the LoRA layers and the camera
embedding (float32), which the trainer optimizes (optimizer group ``guidance``, lr 1e-4 in the
presets) and checkpoints; the frozen UNets and VAE are never saved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal, Optional

import attrs
import torch
from torch import nn

from studio.api import ConfigError, PositiveInt, Scheduled
from studio_dreamfusion.guidance.diffusers_base import DiffusersGuidance
from studio_dreamfusion.guidance.loading import check_memory_options, weights_dtype
from studio_dreamfusion.guidance.sds import sample_timesteps, sds_weight
from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance
from studio_dreamfusion.quiet import quiet_loading
from studio_prolificdreamer.guidance.camera import camera_embedding, install_camera_embedding
from studio_prolificdreamer.guidance.lora import LoRALayers, add_lora, pretrained_view
from studio_prolificdreamer.guidance.models import VSDModels, load_vsd_models
from studio_prolificdreamer.guidance.sampling import SAMPLE_STEPS, sample_latents
from studio_prolificdreamer.guidance.vsd import (
    camera_condition,
    diffusers_guidance,
    draw_camera_keep,
    lora_loss,
    lora_target,
    to_epsilon,
    vsd_gradient,
    vsd_loss,
)

#: ProlificDreamer's timestep ceiling: 0.98 of the schedule until step 5000, then 0.5.
MAX_STEP_SCHEDULE = (5000, 0.98, 0.5, 5001)
#: Which camera-batch entry conditions the LoRA, per ``camera_condition_type``.
CAMERA_KEYS = {"extrinsics": "c2w", "mvp": "mvp_mtx"}


class StableDiffusionVSDGuidance(DiffusersGuidance):
    """``guidance(rgb, prompt_utils, elevation, azimuth, camera_distances, mvp_mtx=, c2w=)``
    returns ``{"loss_vsd", "loss_lora", "grad_norm", "min_step", "max_step"}``.

    ``noise=``/``timesteps=`` fix the VSD draw; ``lora_noise=``/``lora_timesteps=``/
    ``camera_keep=`` fix the LoRA loss's (tests, reproducible debugging)."""

    loss_terms = ("vsd", "lora")

    @attrs.define(kw_only=True)
    class Config(DiffusersGuidance.Config):
        pretrained_model_name_or_path: str = "stabilityai/stable-diffusion-2-1-base"
        """The frozen pretrained Stable Diffusion (id or local folder): UNet, VAE, scheduler."""
        pretrained_model_name_or_path_lora: str = "stabilityai/stable-diffusion-2-1"
        """The model whose UNet gets the LoRA (epsilon or v-prediction); the same string as
        ``pretrained_model_name_or_path`` shares one UNet (less memory, worse per the authors)."""
        guidance_scale: float = 7.5
        """Classifier-free guidance scale ``s`` of the pretrained model, in diffusers' form
        ``eps_u + s * (eps_c - eps_u)``."""
        guidance_scale_lora: float = 1.0
        """CFG scale of the LoRA model between camera-conditioned and camera-dropped outputs
        (diffusers' form; 1.0: the camera-conditioned output alone, one UNet pass fewer)."""
        max_step_percent: Scheduled = attrs.Factory(lambda: list(MAX_STEP_SCHEDULE))
        """Highest VSD timestep as a fraction of the schedule (a number or a schedule; default
        0.98 until step 5000, then 0.5)."""
        lora_rank: PositiveInt = 4
        """Rank of the adapters on every attention projection of the LoRA UNet."""
        lora_cfg_training: bool = True
        """Zero each sample's camera condition with probability 0.1 in the LoRA loss, so the
        LoRA also learns the camera-free prediction ``guidance_scale_lora`` needs."""
        lora_n_timestamp_samples: PositiveInt = 1
        """Timesteps drawn per render for the LoRA loss (the latents are repeated)."""
        camera_condition_type: Literal["extrinsics", "mvp"] = "extrinsics"
        """The LoRA's camera condition: ``extrinsics`` (the camera-to-world matrix ``c2w``) or
        ``mvp`` (the model-view-projection matrix ``mvp_mtx``), flattened to 16 values."""

    cfg: Config
    models: VSDModels
    lora_layers: LoRALayers
    camera_embedding: nn.Module

    # the latent codec is stable-diffusion's (the pretrained VAE encodes for both models)
    encode_images = StableDiffusionGuidance.encode_images
    decode_latents = StableDiffusionGuidance.decode_latents
    latents_of = StableDiffusionGuidance.latents_of

    # -- setup ----------------------------------------------------------------------------------
    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        """Besides SDS's checks: ``compile`` needs two models (a shared UNet changes as the
        LoRA trains)."""
        super().validate_config(cfg, path)
        single = cfg.pretrained_model_name_or_path_lora == cfg.pretrained_model_name_or_path
        if single and cfg.compile != "none":
            raise ConfigError(
                f"{path}.compile={cfg.compile!r} cannot be used when "
                f"{path}.pretrained_model_name_or_path_lora is the pretrained model itself (one "
                f"UNet, whose adapters change every step); set {path}.compile=none, or give the "
                f"LoRA its own base model."
            )

    def configure(self) -> None:
        super().configure()  # config checks, models, schedule, steps
        models = self.models
        self.prediction_type = str(models.scheduler.config.prediction_type)
        self.lora_prediction_type = str(models.scheduler_lora.config.prediction_type)
        self.alphas_cumprod_lora = models.scheduler_lora.alphas_cumprod.to(
            self.device, torch.float32
        )
        self.lora_layers = add_lora(models.unet_lora, self.cfg.lora_rank)
        self.camera_embedding = camera_embedding(models.unet_lora)
        key = f"{self.config_path}.pretrained_model_name_or_path_lora"
        try:
            install_camera_embedding(models.unet_lora, self.camera_embedding, key)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    @quiet_loading()
    def load_models(self) -> VSDModels:
        options = self.memory_options()
        check_memory_options(options, self.device, self.config_path)
        self.weights_dtype = weights_dtype(self.cfg.half_precision_weights, self.device)
        models = load_vsd_models(
            self.cfg.pretrained_model_name_or_path,
            self.cfg.pretrained_model_name_or_path_lora,
            self.config_path,
            self.weights_dtype,
            options,
            self.device,
        )
        vae_config = models.vae.config
        self.vae_scale_factor = 2 ** (len(vae_config.block_out_channels) - 1)
        self.latent_size = int(models.unet.config.sample_size)
        self.image_size = self.latent_size * self.vae_scale_factor
        self.scaling_factor = float(vae_config.scaling_factor)
        return models

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The LoRA adapters and the camera embedding (no base-UNet weight)."""
        return {"lora": self.lora_layers, "camera_embedding": self.camera_embedding}

    # -- the UNet passes ------------------------------------------------------------------------
    @contextlib.contextmanager
    def pretrained_unet(self) -> Iterator[Any]:
        """The pretrained UNet; a shared one with its adapters and camera embedding off."""
        unet = self.models.unet
        if self.models.single_model:
            with pretrained_view(unet):
                yield unet
        else:
            yield unet

    def run_unet(
        self,
        unet: Any,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        text_embeddings: torch.Tensor,
        camera: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``unet``'s raw prediction in ``noisy``'s dtype: the UNet in the weights dtype with
        autocast off; ``camera`` ``[N, 16]`` (float32) as its class labels when given."""
        extra = {} if camera is None else {"class_labels": camera.float()}
        with torch.autocast(self.device.type, enabled=False):
            out = unet(
                noisy.to(self.weights_dtype),
                timesteps,
                encoder_hidden_states=text_embeddings.to(self.weights_dtype),
                **extra,
            ).sample
        return out[:, : noisy.shape[1]].to(noisy.dtype)

    def pretrained_epsilon(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, text_vd: torch.Tensor
    ) -> torch.Tensor:
        """``eps_u + s * (eps_c - eps_u)`` of the pretrained model; ``text_vd`` = ``[cond B,
        uncond B]`` (view-dependent when so configured)."""
        both, t2 = torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps])
        with self.pretrained_unet() as unet:
            raw = self.run_unet(unet, both, t2, text_vd)
        eps = to_epsilon(raw, both, self.alphas_cumprod[t2], self.prediction_type)
        eps_cond, eps_uncond = eps.chunk(2)
        return diffusers_guidance(eps_cond, eps_uncond, self.cfg.guidance_scale)

    def lora_epsilon(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, camera: torch.Tensor
    ) -> torch.Tensor:
        """The LoRA model's noise estimate: CFG (scale ``guidance_scale_lora``) between the
        camera-conditioned and camera-zeroed predictions, both on the plain prompt ``text``
        ``[B, L, D]``; with scale 1 the conditioned prediction alone."""
        unet, scale = self.models.unet_lora, self.cfg.guidance_scale_lora
        if scale == 1.0:
            raw = self.run_unet(unet, noisy, timesteps, text, camera)
            return to_epsilon(
                raw, noisy, self.alphas_cumprod_lora[timesteps], self.lora_prediction_type
            )
        both, t2 = torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps])
        cameras = torch.cat([camera, torch.zeros_like(camera)])
        raw = self.run_unet(unet, both, t2, torch.cat([text, text]), cameras)
        eps = to_epsilon(raw, both, self.alphas_cumprod_lora[t2], self.lora_prediction_type)
        eps_cond, eps_uncond = eps.chunk(2)
        return diffusers_guidance(eps_cond, eps_uncond, scale)

    # -- the guidance call ----------------------------------------------------------------------
    def __call__(
        self,
        rgb: torch.Tensor,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        mvp_mtx: Optional[torch.Tensor] = None,
        c2w: Optional[torch.Tensor] = None,
        rgb_as_latents: bool = False,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
        lora_noise: Optional[torch.Tensor] = None,
        lora_timesteps: Optional[torch.Tensor] = None,
        camera_keep: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """VSD and LoRA losses of renders ``rgb`` ``[B, H, W, C]`` (C = 3, or 4 latent channels
        with ``rgb_as_latents``) seen by cameras ``c2w``/``mvp_mtx`` ``[B, 4, 4]``; the rest of
        a camera batch in ``kwargs`` is ignored."""
        latents = self.latents_of(rgb, rgb_as_latents)
        camera_key = CAMERA_KEYS[self.cfg.camera_condition_type]
        matrices = {"c2w": c2w, "mvp_mtx": mvp_mtx}[camera_key]
        if matrices is None:
            raise ValueError(
                f"stable-diffusion-vsd conditions on {camera_key} "
                f"({self.config_path}.camera_condition_type="
                f"{self.cfg.camera_condition_type!r}) but the call has none; pass the camera "
                f"batch (**batch) to the guidance."
            )
        camera = camera_condition(matrices.to(latents.device, torch.float32), camera_key)
        text_vd, text = self.text_embeddings(prompt_utils, elevation, azimuth, camera_distances)
        out = self.compute_vsd(latents, text_vd, text, camera, noise, timesteps)
        out["loss_lora"] = self.lora_loss(
            latents, text, camera, lora_noise, lora_timesteps, camera_keep
        )
        return out

    @torch.no_grad()
    def sample(
        self,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        steps: int = SAMPLE_STEPS,
        seed: int = 0,
        **batch: Any,
    ) -> dict[str, torch.Tensor]:
        """``{"pretrained", "lora"}``: images ``[B, H, W, 3]`` in [0, 1] that the pretrained model
        (CFG ``guidance_scale``, the view-dependent prompt) and the LoRA model (CFG
        ``guidance_scale_lora`` on the camera, the plain prompt) draw for the batch's views in
        ``steps`` DPM-Solver steps, from the same noise (seeded by ``seed``)."""
        camera_key = CAMERA_KEYS[self.cfg.camera_condition_type]
        camera = camera_condition(batch[camera_key].to(self.device, torch.float32), camera_key)
        text_vd, text = self.text_embeddings(prompt_utils, elevation, azimuth, camera_distances)
        size = self.latent_size
        generator = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn(
            (elevation.shape[0], 4, size, size), generator=generator, device=self.device
        )
        latents = {
            "pretrained": sample_latents(
                lambda x, t: self.pretrained_epsilon(x, t, text_vd),
                self.models.scheduler.config,
                noise,
                steps,
            ),
            "lora": sample_latents(
                lambda x, t: self.lora_epsilon(x, t, text, camera),
                self.models.scheduler_lora.config,
                noise,
                steps,
            ),
        }
        return {name: self.decode_latents(value).float() for name, value in latents.items()}

    def text_embeddings(
        self,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(text_vd, text)``: ``[cond B, uncond B]`` for the pretrained model (view-dependent
        when configured) and the plain prompt's ``[B, L, D]`` for the LoRA model."""
        if getattr(prompt_utils, "use_perp_neg", False):
            raise ConfigError(
                "system.prompt_processor.use_perp_neg=true: stable-diffusion-vsd has no Perp-Neg "
                "form (the reference has none either); set "
                "system.prompt_processor.use_perp_neg=false."
            )
        batch = elevation.shape[0]
        text_vd = prompt_utils.get_text_embeddings(
            elevation, azimuth, camera_distances, self.cfg.view_dependent_prompting
        )
        plain = prompt_utils.get_text_embeddings(elevation, azimuth, camera_distances, False)
        return text_vd, plain[:batch]

    def compute_vsd(
        self,
        latents: torch.Tensor,
        text_vd: torch.Tensor,
        text: torch.Tensor,
        camera: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
    ) -> dict[str, Any]:
        """``{"loss_vsd", "grad_norm", "min_step", "max_step"}`` for ``latents`` ``[B, 4, h, w]``
        (noise and ``t ~ U[min_step, max_step]`` drawn unless given)."""
        noise, timesteps = self.draw_noise_and_timesteps(latents, noise, timesteps)
        with torch.no_grad():
            noisy = self.models.scheduler.add_noise(latents.detach(), noise, timesteps)
            eps_pretrained = self.pretrained_epsilon(noisy, timesteps, text_vd)
            eps_lora = self.lora_epsilon(noisy, timesteps, text, camera)
        weight = sds_weight(self.cfg.weighting_strategy, self.alphas_cumprod[timesteps])
        grad = vsd_gradient(eps_pretrained, eps_lora, weight, self.grad_clip_val)
        return {
            "loss_vsd": vsd_loss(latents, grad),
            "grad_norm": grad.norm(),
            "min_step": self.min_step,
            "max_step": self.max_step,
        }

    def lora_loss(
        self,
        latents: torch.Tensor,
        text: torch.Tensor,
        camera: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
        camera_keep: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The LoRA's denoising loss on ``latents.detach()`` repeated
        ``lora_n_timestamp_samples`` times (``N = B * n`` rows): ``t ~ U{0, T - 1}``, fresh noise,
        the camera zeroed where ``camera_keep`` ``[N]`` is 0 (drawn with probability 0.1 when
        ``lora_cfg_training``); gradients reach only the adapters and the camera embedding."""
        repeats = self.cfg.lora_n_timestamp_samples
        z = latents.detach().repeat(repeats, 1, 1, 1)
        count = z.shape[0]
        if timesteps is None:
            timesteps = sample_timesteps(count, 0, self.num_train_timesteps - 1, z.device)
        timesteps = timesteps.to(device=z.device, dtype=torch.long).reshape(count)
        noise = torch.randn_like(z) if noise is None else noise.to(z)
        if noise.shape != z.shape:
            raise ValueError(f"lora noise has shape {tuple(noise.shape)}, expected {z.shape}")
        if camera_keep is None:
            camera_keep = (
                draw_camera_keep(count, z.device)
                if self.cfg.lora_cfg_training
                else torch.ones(count, device=z.device)
            )
        cameras = camera.repeat(repeats, 1) * camera_keep.to(camera).reshape(count, 1)
        noisy = self.models.scheduler_lora.add_noise(z, noise, timesteps)
        abar = self.alphas_cumprod_lora[timesteps]
        target = lora_target(z, noise, abar, self.lora_prediction_type)
        pred = self.run_unet(
            self.models.unet_lora, noisy, timesteps, text.repeat(repeats, 1, 1), cameras
        )
        return lora_loss(pred, target)
