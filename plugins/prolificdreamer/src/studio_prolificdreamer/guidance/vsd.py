"""Variational score distillation (VSD): ProlificDreamer's gradient and its LoRA's loss.

For latents ``z`` of ``B`` renders, a timestep ``t`` per sample, noise ``eps`` and the camera
condition ``c`` (the flattened 4x4 camera-to-world matrix, 16 values)::

    x_t        = sqrt(abar_t) * z + sqrt(1 - abar_t) * eps            (scheduler.add_noise)
    eps_pre    = eps_u + s * (eps_c - eps_u)          frozen pretrained UNet, CFG s = 7.5
    eps_lora   = e_0 + s_l * (e_c - e_0)              LoRA UNet, text cond, camera c / camera 0
    grad       = w(t) * (eps_pre - eps_lora)          w = 1 - abar_t; nan_to_num, +-grad_clip
    loss_vsd   = 0.5 * sum((z - (z - grad).detach())^2) / B            d loss / d z = grad / B

Both guidance combinations are diffusers' form ``eps_u + s * (eps_c - eps_u)``, unlike SDS's
``eps_c + s * (eps_c - eps_u)``; with ``s_l = 1`` the LoRA term is its camera-conditioned output.
A v-prediction model's output ``v`` is turned into noise by ``eps = sqrt(1 - abar_t) * x_t +
sqrt(abar_t) * v`` (with the schedule of the model that made it).

The LoRA (and the camera embedding) learn the distribution of the current renders: on
``z.detach()`` at timesteps drawn uniformly from the whole schedule, with fresh noise::

    target     = eps                                  (epsilon model)
               = sqrt(abar_t) * eps - sqrt(1 - abar_t) * z            (v-prediction model)
    loss_lora  = mean((lora_unet(x_t, t, text, c * keep) - target)^2)

where ``keep`` is 0 with probability :data:`CAMERA_DROP_PROBABILITY` per sample (classifier-free
training of the camera condition), else 1.

The SDS helpers of ``studio_dreamfusion`` (:func:`sds_gradient`, :func:`sds_loss`,
:data:`WEIGHTINGS`) carry the weighting, clipping and reparameterised loss unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from studio.api import ConfigError
from studio_dreamfusion.guidance.sds import sds_gradient, sds_loss

#: Probability that a sample's camera condition is zeroed in the LoRA loss.
CAMERA_DROP_PROBABILITY = 0.1
#: Values in one camera condition (a flattened 4x4 matrix).
CAMERA_FEATURES = 16
#: What a UNet may predict, as diffusers' ``scheduler.config.prediction_type`` names it.
PREDICTION_TYPES = ("epsilon", "v_prediction")

__all__ = [
    "CAMERA_DROP_PROBABILITY",
    "CAMERA_FEATURES",
    "PREDICTION_TYPES",
    "camera_condition",
    "check_prediction_type",
    "diffusers_guidance",
    "draw_camera_keep",
    "lora_loss",
    "lora_target",
    "to_epsilon",
    "vsd_gradient",
    "vsd_loss",
]


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` ``[N]`` shaped to broadcast over ``like`` ``[N, ...]`` in its dtype."""
    return values.reshape((-1,) + (1,) * (like.dim() - 1)).to(like.dtype)


def diffusers_guidance(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float
) -> torch.Tensor:
    """Classifier-free guidance in diffusers' form: ``eps_u + scale * (eps_c - eps_u)``."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def check_prediction_type(prediction_type: str, key: str) -> None:
    """Raise :class:`ConfigError` unless the model at config ``key`` predicts one of
    :data:`PREDICTION_TYPES`."""
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(
            f"{key}: the model's scheduler has prediction_type={prediction_type!r}, which VSD "
            f"cannot use; it needs an epsilon- or v-prediction Stable Diffusion model "
            f"({', '.join(repr(p) for p in PREDICTION_TYPES)}): point {key} at one such as "
            f"stabilityai/stable-diffusion-2-1-base (epsilon) or stabilityai/stable-diffusion-2-1 "
            f"(v-prediction)."
        )


def to_epsilon(
    prediction: torch.Tensor,
    noisy: torch.Tensor,
    alphas_cumprod_t: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """The noise a UNet's ``prediction`` for ``noisy`` (= ``x_t``) implies.

    ``epsilon``: the prediction itself; ``v_prediction``: ``sqrt(1 - abar_t) * x_t + sqrt(abar_t)
    * v`` (``abar_t`` per sample ``[N]``, from the predicting model's schedule)."""
    if prediction_type == "epsilon":
        return prediction
    if prediction_type != "v_prediction":
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    abar = _per_sample(alphas_cumprod_t, prediction)
    return (1.0 - abar).sqrt() * noisy + abar.sqrt() * prediction


def lora_target(
    latents: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod_t: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """What the LoRA UNet should predict for ``x_t = add_noise(latents, noise, t)``: ``noise``
    (epsilon model) or the velocity ``sqrt(abar_t) * noise - sqrt(1 - abar_t) * latents``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type != "v_prediction":
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    abar = _per_sample(alphas_cumprod_t, latents)
    return abar.sqrt() * noise - (1.0 - abar).sqrt() * latents


def vsd_gradient(
    eps_pretrained: torch.Tensor,
    eps_lora: torch.Tensor,
    weight: torch.Tensor,
    grad_clip: Optional[float] = None,
) -> torch.Tensor:
    """``weight * (eps_pretrained - eps_lora)`` (``weight`` per sample, ``1 - abar_t`` for VSD),
    NaN/inf replaced, clamped to ``+-grad_clip`` when set: SDS's gradient with the LoRA's
    estimate in place of the injected noise."""
    return sds_gradient(eps_pretrained, eps_lora, weight, grad_clip)


def vsd_loss(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum((z - (z - grad).detach())^2) / B``, whose gradient wrt ``z`` is ``grad / B``."""
    return sds_loss(latents, grad)


def camera_condition(matrices: torch.Tensor, key: str = "c2w") -> torch.Tensor:
    """Camera matrices ``[B, 4, 4]`` (camera-to-world, or model-view-projection) flattened
    row-major to the class labels ``[B, 16]`` of the LoRA UNet; ``key`` names the input in the
    error for any other shape."""
    if matrices.dim() != 3 or tuple(matrices.shape[1:]) != (4, 4):
        raise ValueError(
            f"stable-diffusion-vsd needs {key} as [batch, 4, 4] camera matrices, got shape "
            f"{tuple(matrices.shape)}; pass the camera batch (c2w, mvp_mtx) to the guidance."
        )
    return matrices.reshape(matrices.shape[0], CAMERA_FEATURES)


def draw_camera_keep(
    count: int,
    device: torch.device,
    drop_probability: float = CAMERA_DROP_PROBABILITY,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Per sample 0.0 (drop the camera condition) with ``drop_probability``, else 1.0:
    ``[count]`` float."""
    draw = torch.rand(count, device=device, generator=generator)
    return (draw >= drop_probability).float()


def lora_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean((prediction - target)^2)`` in float32 (the LoRA UNet may run in float16)."""
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")
