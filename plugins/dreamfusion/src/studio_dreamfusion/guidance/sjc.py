"""Score Jacobian Chaining (SJC): the perturb-and-average score of a diffusion model as a gradient.

SJC reads the DDPM model as a variance-exploding denoiser. For latents ``y`` ``[B, C, H, W]``, a
timestep ``t`` per sample and noise ``eps``::

    sigma_t = sqrt((1 - abar_t) / abar_t)                 (noise level of the VE form)
    z_s     = y + sigma_t * eps                           (the perturbed latents)
    eps_hat = CFG of the UNet at (z_s / sqrt(1 + sigma_t^2), t)
    D       = z_s - sigma_t * eps_hat                     (the denoised estimate)
    grad    = -(D - y) / sigma_t      with var_red       (SJC's Eq. 16)
    grad    = -(D - z_s) / sigma_t    without

``betas`` are Stable Diffusion's training schedule (scaled-linear from 0.00085 to 0.012 over
the model's timesteps, a DDPM schedule), timesteps are drawn from [0.01, 0.97] of the schedule
by the preset, and no ``w(t)`` multiplies the gradient. The loss is built as for SDS
(:func:`studio_dreamfusion.guidance.sds.sds_loss`), so ``d loss / d y = grad / B``.

**Relation to SDS** (tested): ``1 + sigma_t^2 = 1 / abar_t``, so the UNet's input ``z_s /
sqrt(1 + sigma_t^2) = sqrt(abar_t) y + sqrt(1 - abar_t) eps`` is exactly DDPM's ``x_t`` for the
same noise; and ``-(D - y) / sigma_t = eps_hat - eps``. With ``var_red`` the SJC gradient *is*
the SDS gradient with ``uniform`` weighting (``w(t) = 1``) on the same noise and timestep;
without it, it is ``eps_hat`` alone (the noise is not subtracted: an unbiased but noisier
estimate of the same expectation).
"""

from __future__ import annotations

import torch

#: Stable Diffusion's training betas, which SJC's DDPM schedule uses (reference §4.7.1).
SJC_BETA_START = 0.00085
SJC_BETA_END = 0.012


def sjc_noise_level(alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """``sigma_t = sqrt((1 - abar_t) / abar_t)`` per sample."""
    return ((1.0 - alphas_cumprod_t) / alphas_cumprod_t).sqrt()


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape((-1,) + (1,) * (like.dim() - 1)).to(like.dtype)


def sjc_perturb(
    latents: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z_s, model_input)``: ``z_s = y + sigma * eps`` and the UNet's input ``z_s / sqrt(1 +
    sigma^2)``; ``sigma`` per sample ``[B]``."""
    s = _per_sample(sigma, latents)
    perturbed = latents + s * noise
    return perturbed, perturbed / torch.sqrt(1.0 + s * s)


def sjc_gradient(
    latents: torch.Tensor,
    perturbed: torch.Tensor,
    eps_hat: torch.Tensor,
    sigma: torch.Tensor,
    var_red: bool,
    grad_clip: float | None = None,
) -> torch.Tensor:
    """``-(D - y) / sigma`` (``var_red``) or ``-(D - z_s) / sigma`` with ``D = z_s - sigma *
    eps_hat``; NaN/inf replaced, optionally clamped to ``+-grad_clip`` (as for SDS)."""
    s = _per_sample(sigma, latents)
    denoised = perturbed - s * eps_hat
    reference = latents if var_red else perturbed
    grad = torch.nan_to_num(-(denoised - reference) / s)
    if grad_clip is not None:
        grad = grad.clamp(-grad_clip, grad_clip)
    return grad
