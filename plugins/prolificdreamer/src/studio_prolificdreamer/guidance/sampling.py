"""Few-step image samples from a noise estimator: what the pretrained and the LoRA models would
draw for a view (ProlificDreamer's ``visualize_samples``).

:func:`sample_latents` runs diffusers' multistep DPM-Solver (25 steps in the reference) on any
``epsilon(x_t, t) -> eps`` function, from given starting noise::

    x_T = noise * init_noise_sigma
    x_{t'} = DPMSolverMultistep.step(epsilon(scale_model_input(x_t, t), t), t, x_t)

The solver is configured from the model's own scheduler config with ``prediction_type:
epsilon``: the estimators give noise whatever the model predicts (v-prediction is converted
before).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: The reference's sampling steps for validation images.
SAMPLE_STEPS = 25


def sample_latents(
    epsilon: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler_config: Any,
    noise: torch.Tensor,
    steps: int = SAMPLE_STEPS,
) -> torch.Tensor:
    """Latents ``[B, 4, h, w]`` denoised from ``noise`` by ``steps`` DPM-Solver steps of the
    noise estimate ``epsilon(x, t)`` (``t`` a ``[B]`` long tensor)."""
    from diffusers import DPMSolverMultistepScheduler

    solver = DPMSolverMultistepScheduler.from_config(scheduler_config, prediction_type="epsilon")
    solver.set_timesteps(steps, device=noise.device)
    x = noise * solver.init_noise_sigma
    for t in solver.timesteps:
        timesteps = t.to(noise.device, torch.long).expand(noise.shape[0])
        x = solver.step(epsilon(solver.scale_model_input(x, t), timesteps), t, x).prev_sample
    return x
