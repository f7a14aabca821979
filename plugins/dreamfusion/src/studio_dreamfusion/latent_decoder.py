"""Decode Stable Diffusion latents rendered by a 3D model into RGB, with the VAE alone.

Methods that render latents (SJC, Latent-NeRF) show and score decoded images. ``studio test``
must work without the UNet, so :class:`LatentDecoder` loads only the VAE folder of the model,
and only on first use. A decoder can also wrap the VAE a loaded guidance already holds.

Decoding is :func:`studio_dreamfusion.vae.decode_latents`, at the UNet's latent size or twice it
(SJC's subpixel rendering), shown at the render's size.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import torch

from studio_dreamfusion.guidance.loading import freeze, weights_dtype
from studio_dreamfusion.pretrained import diffusers_dtype_kwargs, resolve_pretrained
from studio_dreamfusion.quiet import quiet_loading
from studio_dreamfusion.vae import decode_latents


class LatentDecoder:
    """The VAE of ``pretrained_model_name_or_path``, loaded on first use.

    ``config_key`` names the setting the model came from, for the error when it is missing;
    ``vae`` and ``unet_latent_size`` wrap a VAE already loaded (a guidance's) instead.
    """

    def __init__(
        self,
        pretrained_model_name_or_path: str,
        device: torch.device,
        half_precision_weights: bool = True,
        config_key: str = "system.guidance.pretrained_model_name_or_path",
        vae: Any = None,
        unet_latent_size: Optional[int] = None,
    ) -> None:
        self.name = pretrained_model_name_or_path
        self.device = device
        self.dtype = weights_dtype(half_precision_weights, device)
        self.config_key = config_key
        self._vae = vae
        self._unet_latent_size = unet_latent_size

    @property
    def vae(self) -> Any:
        if self._vae is None:
            self._vae = self._load()
        return self._vae

    @quiet_loading()
    def _load(self) -> Any:
        from diffusers import AutoencoderKL

        path = resolve_pretrained(self.name, subfolders=["vae"], config_key=self.config_key)
        unet_config = path / "unet" / "config.json"
        if unet_config.is_file():  # the UNet's input size, without loading the UNet
            self._unet_latent_size = int(json.loads(unet_config.read_text())["sample_size"])
        vae = AutoencoderKL.from_pretrained(
            path, subfolder="vae", **diffusers_dtype_kwargs(self.dtype)
        )
        freeze(vae)
        return vae.to(self.device)

    @property
    def unet_latent_size(self) -> int:
        """The UNet's latent input size (``unet/config.json``'s ``sample_size``; 64 for SD
        2.1-base), read when the VAE loads."""
        vae = self.vae
        if self._unet_latent_size is None:
            self._unet_latent_size = int(vae.config.sample_size) // 2 ** (
                len(vae.config.block_out_channels) - 1
            )
        return self._unet_latent_size

    def decode(
        self, latents: torch.Tensor, latent_size: int, out_size: Optional[tuple[int, int]] = None
    ) -> torch.Tensor:
        """:func:`decode_latents` with this model's VAE."""
        return decode_latents(self.vae, latents.to(self.device), latent_size, out_size)


class DecodesLatents:
    """For systems whose renders are latents: :meth:`decode` them through the VAE of
    ``system.guidance``'s model (the loaded guidance's own VAE in training, else the VAE alone,
    loaded on first use). Mixed into a ``BaseLift3DSystem`` subclass."""

    _latent_decoder: Optional[LatentDecoder] = None

    @property
    def decoder(self) -> LatentDecoder:
        if self._latent_decoder is None:
            guidance_cfg = self.cfg.guidance  # type: ignore[attr-defined]
            guidance = getattr(self, "guidance", None)
            vae = getattr(getattr(guidance, "models", None), "vae", None)
            self._latent_decoder = LatentDecoder(
                guidance_cfg.get("pretrained_model_name_or_path", ""),
                self.device,  # type: ignore[attr-defined]
                half_precision_weights=guidance_cfg.get("half_precision_weights", True),
                config_key=f"{self.config_path}.guidance.pretrained_model_name_or_path",  # type: ignore[attr-defined]
                vae=vae,
                unet_latent_size=getattr(guidance, "latent_size", None) if vae else None,
            )
        return self._latent_decoder

    def decode(self, latents: torch.Tensor, subpixel: bool = False) -> torch.Tensor:
        """RGB ``[B, H, W, 3]`` of a latent render ``[B, H, W, 4]``, decoded at the UNet's latent
        size (twice it with ``subpixel``) and shown at ``H x W``."""
        size = self.decoder.unet_latent_size * (2 if subpixel else 1)
        return self.decoder.decode(latents, size)
