"""Score-distillation guidance.

Registered names: ``stable-diffusion`` (:mod:`.stable_diffusion`) and ``deep-floyd``
(:mod:`.deep_floyd`). The SDS step shared by every SDS-style guidance is :mod:`.sds`; pipeline
loading and VRAM options are :mod:`.loading`.
"""
