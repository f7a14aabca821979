"""Score distillation sampling (SDS): the gradient every SDS-style guidance shares.

For latents (or pixels) ``z`` of a batch of ``B`` renders, a timestep ``t`` per sample and noise
``eps``::

    x_t     = sqrt(abar_t) * z + sqrt(1 - abar_t) * eps                 (scheduler.add_noise)
    eps_hat = eps_c + s * (eps_c - eps_u)                               (classifier-free guidance)
    grad    = w(t) * (eps_hat - eps)        nan_to_num, clamped to +-grad_clip when set
    loss    = 0.5 * sum((z - (z - grad).detach())^2) / B               so d loss / d z = grad / B

Note the reference's CFG convention ``eps_c + s*(eps_c - eps_u)`` (diffusers' scale ``s + 1``).
With Perp-Neg the combination is ``eps_u + s * (e_pos + sum_i w_i * perp(e_i, e_pos))`` with
``e_pos = eps_pos - eps_u`` and ``e_i = eps_neg_i - eps_u``.

Weightings ``w(t)``: ``sds`` = ``1 - abar_t``, ``uniform`` = 1, ``fantasia3d`` =
``sqrt(abar_t) * (1 - abar_t)``.

:class:`ScoreDistillationGuidance` wires these into a guidance object; a concrete guidance (Stable
Diffusion, DeepFloyd IF, ...) provides :meth:`~ScoreDistillationGuidance.load_models` and
:meth:`~ScoreDistillationGuidance.predict_noise` and turns its input images into ``z``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import attrs
import torch

from studio.api import BaseObject, ConfigError, Scheduled, scheduled_value

#: ``w(t)`` from ``abar_t`` (``alphas_cumprod[t]``) for each weighting strategy.
WEIGHTINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sds": lambda abar: 1.0 - abar,
    "uniform": lambda abar: torch.ones_like(abar),
    "fantasia3d": lambda abar: abar.sqrt() * (1.0 - abar),
}


def check_weighting_strategy(strategy: str, path: str = "system.guidance") -> None:
    """Raise :class:`ConfigError` unless ``strategy`` is one of :data:`WEIGHTINGS`."""
    if strategy not in WEIGHTINGS:
        raise ConfigError(
            f"{path}.weighting_strategy={strategy!r} is not a known SDS weighting; use one of "
            f"{', '.join(repr(k) for k in WEIGHTINGS)} (sds: 1 - alphabar_t, uniform: 1, "
            f"fantasia3d: sqrt(alphabar_t) * (1 - alphabar_t))."
        )


def sds_weight(strategy: str, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """``w(t)`` for each sample (shape of ``alphas_cumprod_t``)."""
    check_weighting_strategy(strategy)
    return WEIGHTINGS[strategy](alphas_cumprod_t)


def step_range(num_train_timesteps: int, min_percent: float, max_percent: float) -> tuple[int, int]:
    """``(int(T * min_percent), int(T * max_percent))`` -- the inclusive timestep range, clamped
    to the schedule's ``[0, T - 1]`` (the reference draws ``t = T`` for a percent of 1.0, one past
    the end of its ``T``-entry tables)."""
    last = num_train_timesteps - 1
    low = min(max(int(num_train_timesteps * min_percent), 0), last)
    high = min(max(int(num_train_timesteps * max_percent), 0), last)
    return low, high


def schedule_breakpoints(*values: Any) -> list[int]:
    """Steps at which piecewise-linear schedules (or constants) change slope, plus step 0: two
    such schedules compare everywhere as they compare at these steps."""
    steps = {0}
    for value in values:
        if isinstance(value, (list, tuple)):
            steps.update(
                int(v) for v in ([value[-1]] if len(value) == 3 else [value[0], value[-1]])
            )
    return sorted(steps)


def sample_timesteps(
    batch: int,
    min_step: int,
    max_step: int,
    device: torch.device,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """``t ~ randint(min_step, max_step + 1)`` independently per sample (long ``[batch]``)."""
    return torch.randint(
        min_step, max_step + 1, (batch,), dtype=torch.long, device=device, generator=generator
    )


def classifier_free_guidance(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float
) -> torch.Tensor:
    """The reference's CFG: ``eps_c + scale * (eps_c - eps_u)``."""
    return eps_cond + scale * (eps_cond - eps_uncond)


def perpendicular_component(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample: ``x - (<x, y> / max(<y, y>, 1e-6)) * y`` (inner products over all but dim 0)."""
    dims = tuple(range(1, x.dim()))
    dot = (x * y).sum(dim=dims, keepdim=True)
    norm2 = (y * y).sum(dim=dims, keepdim=True).clamp_min(1e-6)
    return x - (dot / norm2) * y


def perp_neg_guidance(
    eps_pos: torch.Tensor,
    eps_uncond: torch.Tensor,
    eps_neg: torch.Tensor,
    neg_weights: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Perp-Neg: ``eps_u + scale * (e_pos + sum_i w_i * perp(e_i, e_pos))``.

    ``eps_pos``, ``eps_uncond``: ``[B, ...]``; ``eps_neg``: ``[B * K, ...]`` sample-major (rows
    ``K*b .. K*b + K - 1`` belong to sample ``b``); ``neg_weights``: ``[B, K]``.
    """
    batch, k = neg_weights.shape
    e_pos = eps_pos - eps_uncond
    e_neg = eps_neg.reshape(batch, k, *eps_neg.shape[1:]) - eps_uncond.unsqueeze(1)
    shape = (batch,) + (1,) * (eps_pos.dim() - 1)
    accum = torch.zeros_like(e_pos)
    for i in range(k):
        w = neg_weights[:, i].to(e_pos.dtype).reshape(shape)
        accum = accum + w * perpendicular_component(e_neg[:, i], e_pos)
    return eps_uncond + scale * (e_pos + accum)


def sds_gradient(
    eps_hat: torch.Tensor,
    noise: torch.Tensor,
    weight: torch.Tensor,
    grad_clip: Optional[float] = None,
) -> torch.Tensor:
    """``w * (eps_hat - noise)`` with NaN/inf replaced and optionally clamped to ``+-grad_clip``.

    ``weight`` is per sample (``[B]``) and broadcast over the other dimensions.
    """
    w = weight.reshape((-1,) + (1,) * (eps_hat.dim() - 1)).to(eps_hat.dtype)
    grad = torch.nan_to_num(w * (eps_hat - noise))
    if grad_clip is not None:
        grad = grad.clamp(-grad_clip, grad_clip)
    return grad


def sds_loss(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum((z - (z - grad).detach())^2) / B``, whose gradient wrt ``z`` is ``grad / B``."""
    target = (latents - grad).detach()
    return 0.5 * ((latents - target) ** 2).sum() / latents.shape[0]


@dataclass
class DiffusionModels:
    """The frozen diffusion model parts a guidance uses.

    A plain holder, deliberately not an ``nn.Module``: the weights never join a system's
    parameter list, optimizer or checkpoint.
    """

    pipe: Any
    unet: Any
    scheduler: Any
    vae: Any = None


def check_percent_schedule(value: Any, key: str) -> None:
    """Raise :class:`ConfigError` unless the constant or schedule ``value`` stays in [0, 1]."""
    if isinstance(value, (int, float)):
        ends = [value]
    else:  # [start, end, end_step] or [start_step, start, end, end_step]
        ends = value[:2] if len(value) == 3 else value[1:3]
    if not all(0.0 <= float(v) <= 1.0 for v in ends):
        raise ConfigError(
            f"{key}={value!r} must stay within [0, 1] (a fraction of the diffusion timesteps), "
            f"e.g. {key.rsplit('.', 1)[-1]}=0.5."
        )


class ScoreDistillationGuidance(BaseObject):
    """An SDS guidance: ``guidance(images, prompt_utils, elevation, azimuth, camera_distances)``
    returns ``{"loss_sds", "grad_norm", "min_step", "max_step"}``.

    Subclasses implement :meth:`load_models`, :meth:`predict_noise` and :meth:`__call__` (which
    turns its images into ``z`` and calls :meth:`compute_sds`). ``noise=`` and ``timesteps=``
    fix what is otherwise sampled (tests, reproducible debugging).
    """

    config_path: ClassVar[str] = "system.guidance"
    #: The losses it returns (``loss_<term>``), each weighed by ``system.loss.lambda_<term>``.
    loss_terms: ClassVar[tuple[str, ...]] = ("sds",)

    @attrs.define(kw_only=True)
    class Config:
        guidance_scale: float = 100.0
        """Classifier-free guidance scale ``s`` of ``eps_c + s * (eps_c - eps_u)`` (the
        reference's form: diffusers' scale ``s + 1``)."""
        grad_clip: Optional[Scheduled] = None
        """Clamp every SDS gradient element to ``+-grad_clip`` (a number or a schedule); null:
        no clamping."""
        min_step_percent: Scheduled = 0.02
        """Lowest diffusion timestep drawn, as a fraction of the training timesteps in [0, 1]
        (a number or a schedule)."""
        max_step_percent: Scheduled = 0.98
        """Highest diffusion timestep drawn, as a fraction in [0, 1], at least
        ``min_step_percent`` (a number or a schedule, e.g. ``[5000, 0.98, 0.5, 5001]``)."""
        weighting_strategy: str = "sds"
        """SDS weight ``w(t)``: ``sds`` (``1 - abar_t``), ``uniform`` (1) or ``fantasia3d``
        (``sqrt(abar_t) * (1 - abar_t)``)."""
        view_dependent_prompting: bool = True
        """Condition each camera on its view's prompt (side, front, back, overhead); false: the
        plain prompt."""

    cfg: Config
    models: DiffusionModels

    # -- subclass API ---------------------------------------------------------------------------
    def load_models(self) -> DiffusionModels:
        """Load, freeze and place the diffusion model (called once by :meth:`configure`)."""
        raise NotImplementedError

    def predict_noise(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, text_embeddings: torch.Tensor
    ) -> torch.Tensor:
        """The model's epsilon for ``noisy`` ``[N, C, H, W]`` (same dtype and channels out)."""
        raise NotImplementedError

    # -- setup and schedules --------------------------------------------------------------------
    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        """Weighting, step percents within [0, 1] and ``min <= max`` at every step: checked when
        the run's config is resolved, before anything is created or loaded."""
        super().validate_config(cfg, path)
        check_weighting_strategy(cfg.weighting_strategy, path)
        for name in ("min_step_percent", "max_step_percent"):
            check_percent_schedule(getattr(cfg, name), f"{path}.{name}")
        low, high = cfg.min_step_percent, cfg.max_step_percent
        for step in schedule_breakpoints(low, high):
            if scheduled_value(high, step) < scheduled_value(low, step):
                raise ConfigError(
                    f"{path}.max_step_percent={high!r} falls below min_step_percent={low!r} at "
                    f"step {step}; keep max_step_percent >= min_step_percent at every step."
                )

    def configure(self) -> None:
        type(self).validate_config(self.cfg, self.config_path)
        self.models = self.load_models()
        scheduler = self.models.scheduler
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.grad_clip_val: Optional[float] = None
        self.update_step(0, 0)

    def update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        """Evaluate ``grad_clip`` and ``min/max_step_percent`` at ``global_step``."""
        cfg = self.cfg
        self.grad_clip_val = (
            None if cfg.grad_clip is None else scheduled_value(cfg.grad_clip, global_step)
        )
        self.min_step, self.max_step = step_range(
            self.num_train_timesteps,
            scheduled_value(cfg.min_step_percent, global_step),
            scheduled_value(cfg.max_step_percent, global_step),
        )
        if self.max_step < self.min_step:
            raise ConfigError(
                f"At step {global_step}, {self.config_path}.max_step_percent gives timestep "
                f"{self.max_step}, below min_step_percent's {self.min_step}; keep "
                f"max_step_percent >= min_step_percent at every step."
            )

    # -- the SDS step ---------------------------------------------------------------------------
    def compute_sds(
        self,
        latents: torch.Tensor,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
    ) -> dict[str, Any]:
        """SDS loss for ``latents`` ``[B, C, H, W]`` (any differentiable function of the scene)."""
        noise, timesteps = self.draw_noise_and_timesteps(latents, noise, timesteps)
        with torch.no_grad():
            noisy = self.models.scheduler.add_noise(latents.detach(), noise, timesteps)
            eps_hat = self.guided_noise(
                noisy, timesteps, prompt_utils, elevation, azimuth, camera_distances
            )
        weight = sds_weight(self.cfg.weighting_strategy, self.alphas_cumprod[timesteps])
        grad = sds_gradient(eps_hat, noise, weight, self.grad_clip_val)
        return self.guidance_output(latents, grad)

    def guidance_output(self, latents: torch.Tensor, grad: torch.Tensor) -> dict[str, Any]:
        """``{"loss_sds", "grad_norm", "min_step", "max_step"}`` of a score-distillation
        gradient ``grad`` for ``latents`` (the loss by reparameterisation, :func:`sds_loss`)."""
        return {
            "loss_sds": sds_loss(latents, grad),
            "grad_norm": grad.norm(),
            "min_step": self.min_step,
            "max_step": self.max_step,
        }

    def draw_noise_and_timesteps(
        self,
        latents: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        timesteps: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noise, timesteps)`` for ``latents`` ``[B, ...]``: the given ones checked and placed,
        else ``randn_like(latents)`` and ``t ~ randint(min_step, max_step + 1)`` per sample."""
        batch = latents.shape[0]
        if timesteps is None:
            timesteps = sample_timesteps(batch, self.min_step, self.max_step, latents.device)
        timesteps = timesteps.to(device=latents.device, dtype=torch.long).reshape(batch)
        if noise is None:
            noise = torch.randn_like(latents)
        elif noise.shape != latents.shape:
            raise ValueError(
                f"noise has shape {tuple(noise.shape)}, latents {tuple(latents.shape)}"
            )
        return noise.to(latents), timesteps

    def guided_noise(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_utils: Any,
        elevation: torch.Tensor,
        azimuth: torch.Tensor,
        camera_distances: torch.Tensor,
    ) -> torch.Tensor:
        """``eps_hat`` for ``noisy`` by CFG (or Perp-Neg when the prompt output asks for it)."""
        batch = noisy.shape[0]
        scale = self.cfg.guidance_scale
        if getattr(prompt_utils, "use_perp_neg", False):
            embeddings, neg_weights = prompt_utils.get_text_embeddings_perp_neg(
                elevation, azimuth, camera_distances, self.cfg.view_dependent_prompting
            )
            k = neg_weights.shape[1]
            # negatives are sample-major, so their inputs repeat each sample k times (the reference
            # tiled the batch instead, pairing negatives with other samples' inputs when B > 1)
            model_in = torch.cat([noisy, noisy, noisy.repeat_interleave(k, dim=0)])
            t_in = torch.cat([timesteps, timesteps, timesteps.repeat_interleave(k)])
            eps = self.predict_noise(model_in, t_in, embeddings)
            return perp_neg_guidance(
                eps[:batch], eps[batch : 2 * batch], eps[2 * batch :], neg_weights, scale
            )
        embeddings = prompt_utils.get_text_embeddings(
            elevation, azimuth, camera_distances, self.cfg.view_dependent_prompting
        )
        eps = self.predict_noise(
            torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps]), embeddings
        )
        eps_cond, eps_uncond = eps.chunk(2)
        return classifier_free_guidance(eps_cond, eps_uncond, scale)
