"""Variational score distillation guidance.

Registered name: ``stable-diffusion-vsd`` (:mod:`.stable_diffusion_vsd`). Its formulas are
:mod:`.vsd`; the LoRA adapters :mod:`.lora`; the camera class embedding :mod:`.camera`; loading
both diffusion models :mod:`.models`.
"""
