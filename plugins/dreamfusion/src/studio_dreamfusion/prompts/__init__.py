"""Prompt processors: prompts -> (view-dependent) text embeddings for the guidance.

Registered names: ``stable-diffusion`` (:mod:`.stable_diffusion`) and ``deep-floyd``
(:mod:`.deep_floyd`); shared logic in :mod:`.base`, :mod:`.views`, :mod:`.output`, :mod:`.cache`.
"""
