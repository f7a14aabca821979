"""``stable-diffusion`` guidance: SDS through Stable Diffusion's latent space (reference §4.7.1).

Images ``[B, H, W, 3]`` in [0, 1] are resized to the VAE's input size (``unet.sample_size *
vae_scale_factor``: 512 for SD 2.1-base), mapped to [-1, 1] and encoded
(``latent_dist.sample() * scaling_factor``); with ``rgb_as_latents=True`` the 4-channel input is
resized to the UNet's latent size (64) and used as the latents directly. The SDS step itself is
:mod:`studio_dreamfusion.guidance.sds`.

With ``use_sjc`` the gradient is Score Jacobian Chaining's (:mod:`studio_dreamfusion.guidance.sjc`)
on a DDPM schedule with Stable Diffusion's betas instead of SDS; every other option (model, VRAM
switches, compile, Perp-Neg) applies unchanged.

The UNet and VAE are frozen, in eval mode, held outside any ``nn.Module`` and run in the weights
dtype (fp16 on CUDA when ``half_precision_weights``; fp32 on CPU) with autocast disabled; their
outputs are cast back to the input dtype.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import torch
import torch.nn.functional as F

from studio_dreamfusion.guidance.diffusers_base import DiffusersGuidance
from studio_dreamfusion.guidance.loading import (
    MemoryOptions,
    check_memory_options,
    freeze,
    place_pipeline,
    weights_dtype,
)
from studio_dreamfusion.guidance.sds import DiffusionModels
from studio_dreamfusion.guidance.sjc import (
    SJC_BETA_END,
    SJC_BETA_START,
    sjc_gradient,
    sjc_noise_level,
    sjc_perturb,
)
from studio_dreamfusion.pretrained import diffusers_dtype_kwargs, resolve_pretrained
from studio_dreamfusion.quiet import quiet_loading
from studio_dreamfusion.vae import decode_latents as decode_with_vae


def sjc_scheduler(num_train_timesteps: int) -> Any:
    """SJC's DDPM schedule: Stable Diffusion's scaled-linear training betas."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=SJC_BETA_START,
        beta_end=SJC_BETA_END,
        beta_schedule="scaled_linear",
    )


def load_frozen_sd_pipeline(
    name_or_path: str,
    key: str,
    dtype: torch.dtype,
    options: MemoryOptions,
    device: torch.device,
) -> tuple[Any, Any]:
    """``(pipeline, folder)``: the Stable Diffusion pipeline at config ``key`` without tokenizer,
    text encoder or safety checker, its UNet and VAE frozen in ``dtype`` and placed on ``device``
    as ``options`` say; ``folder`` is where it was loaded from (for its scheduler)."""
    from diffusers import StableDiffusionPipeline

    path = resolve_pretrained(name_or_path, subfolders=["unet", "vae", "scheduler"], config_key=key)
    pipe = StableDiffusionPipeline.from_pretrained(
        path,
        tokenizer=None,
        text_encoder=None,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        **diffusers_dtype_kwargs(dtype),
    )
    freeze(pipe.unet, pipe.vae)
    place_pipeline(pipe, pipe.unet, options, device)
    return pipe, path


class StableDiffusionGuidance(DiffusersGuidance):
    @attrs.define(kw_only=True)
    class Config(DiffusersGuidance.Config):
        pretrained_model_name_or_path: str = "stabilityai/stable-diffusion-2-1-base"
        """Stable Diffusion model id or local folder (UNet, VAE and scheduler are loaded)."""
        guidance_scale: float = 100.0
        """Classifier-free guidance scale ``s`` of ``eps_c + s * (eps_c - eps_u)`` (the
        reference's form: diffusers' scale ``s + 1``)."""
        token_merging: bool = False
        """Apply ToMe token merging to the UNet (faster, approximate; needs tomesd)."""
        token_merging_params: dict[str, Any] = attrs.Factory(dict)
        """Keyword arguments of ``tomesd.apply_patch`` (e.g. ``ratio: 0.5``)."""
        use_sjc: bool = False
        """Score Jacobian Chaining's gradient instead of SDS: the perturb-and-average score on a
        DDPM schedule with SD's betas, no ``w(t)`` (``weighting_strategy`` is not used)."""
        var_red: bool = True
        """With ``use_sjc``: subtract the injected noise (SJC's variance reduction, Eq. 16);
        false: the raw denoiser score."""

    cfg: Config

    def graph_state(self) -> tuple:
        """The timestep range and gradient clip of this step (``update_step`` evaluates their
        schedules); noise and timesteps are drawn on the device, inside the graph."""
        return (self.min_step, self.max_step, self.grad_clip_val)

    def graph_blocker(self) -> Optional[str]:
        cfg, path = self.cfg, self.config_path
        if cfg.compile in ("reduce-overhead", "max-autotune"):
            return f"{path}.compile={cfg.compile} makes CUDA graphs of its own (use default)"
        if cfg.enable_sequential_cpu_offload:
            return f"{path}.enable_sequential_cpu_offload moves weights from the host every call"
        if cfg.token_merging or cfg.use_sjc:
            which = "token_merging" if cfg.token_merging else "use_sjc"
            return f"{path}.{which} has not been verified under capture"
        return super().graph_blocker()

    @quiet_loading()
    def load_models(self) -> DiffusionModels:
        from diffusers import DDIMScheduler

        options = self.memory_options()
        check_memory_options(options, self.device, self.config_path)
        self.weights_dtype = weights_dtype(self.cfg.half_precision_weights, self.device)
        pipe, path = load_frozen_sd_pipeline(
            self.cfg.pretrained_model_name_or_path,
            f"{self.config_path}.pretrained_model_name_or_path",
            self.weights_dtype,
            options,
            self.device,
        )
        scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
        if self.cfg.use_sjc:
            scheduler = sjc_scheduler(int(scheduler.config.num_train_timesteps))
        vae_config = pipe.vae.config
        self.vae_scale_factor = 2 ** (len(vae_config.block_out_channels) - 1)
        self.latent_size = int(pipe.unet.config.sample_size)
        self.image_size = self.latent_size * self.vae_scale_factor
        self.scaling_factor = float(vae_config.scaling_factor)
        return DiffusionModels(pipe=pipe, unet=pipe.unet, vae=pipe.vae, scheduler=scheduler)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, 4, h, w]`` of images ``[B, 3, H, W]`` in [0, 1] (differentiable)."""
        with torch.autocast(self.device.type, enabled=False):
            posterior = self.models.vae.encode(
                (images * 2.0 - 1.0).to(self.weights_dtype)
            ).latent_dist
            latents = posterior.sample() * self.scaling_factor
        return latents.to(images.dtype)

    def decode_latents(
        self, latents: torch.Tensor, latent_size: Optional[int] = None
    ) -> torch.Tensor:
        """Images ``[B, H, W, 3]`` in [0, 1] from latents ``[B, 4, h, w]`` (resized to
        ``latent_size``, default the UNet's, before decoding)."""
        size = latent_size or self.latent_size
        decoded = size * self.vae_scale_factor
        return decode_with_vae(
            self.models.vae, latents.permute(0, 2, 3, 1), size, (decoded, decoded)
        )

    def latents_of(self, rgb: torch.Tensor, rgb_as_latents: bool) -> torch.Tensor:
        """Latents ``[B, 4, h, w]`` of renders ``[B, H, W, C]``: 4-channel renders resized to the
        UNet's latent size, or RGB resized to the model's image size and VAE-encoded."""
        images = rgb.permute(0, 3, 1, 2)
        if rgb_as_latents:
            size = self.latent_size
            return F.interpolate(images, (size, size), mode="bilinear", align_corners=False)
        size = self.image_size
        resized = F.interpolate(images, (size, size), mode="bilinear", align_corners=False)
        return self.encode_images(resized)

    # -- the guidance call ----------------------------------------------------------------------
    def __call__(
        self,
        rgb: torch.Tensor,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        rgb_as_latents: bool = False,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """SDS loss of renders ``rgb`` ``[B, H, W, C]`` (C = 3, or 4 with ``rgb_as_latents``).

        ``noise`` (shape of the latents) and ``timesteps`` (long ``[B]``) replace the sampled ones;
        other keyword arguments (the rest of a camera batch) are ignored.
        """
        latents = self.latents_of(rgb, rgb_as_latents)
        compute = self.compute_sjc if self.cfg.use_sjc else self.compute_sds
        return compute(
            latents,
            prompt_utils,
            elevation,
            azimuth,
            camera_distances,
            noise=noise,
            timesteps=timesteps,
        )

    def compute_sjc(
        self,
        latents: torch.Tensor,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
    ) -> dict[str, Any]:
        """The SJC loss for ``latents`` ``[B, 4, h, w]``: returned as ``loss_sds`` (the same
        reparameterised loss and lambda as SDS), with ``grad_norm``, ``min_step``, ``max_step``."""
        noise, timesteps = self.draw_noise_and_timesteps(latents, noise, timesteps)
        sigma = sjc_noise_level(self.alphas_cumprod[timesteps])
        with torch.no_grad():
            perturbed, model_input = sjc_perturb(latents.detach(), noise, sigma)
            eps_hat = self.guided_noise(
                model_input, timesteps, prompt_utils, elevation, azimuth, camera_distances
            )
        grad = sjc_gradient(
            latents.detach(), perturbed, eps_hat, sigma, self.cfg.var_red, self.grad_clip_val
        )
        return self.guidance_output(latents, grad)
