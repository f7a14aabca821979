"""Pretrained models: local folders and the Hugging Face hub cache (see :mod:`studio.models.hub`)."""

from studio.models.hub import (
    CachedModel,
    ModelNotAvailableError,
    hub_cache_dir,
    list_cached_models,
    pull_model,
    resolve_model,
)

__all__ = [
    "CachedModel",
    "ModelNotAvailableError",
    "hub_cache_dir",
    "list_cached_models",
    "pull_model",
    "resolve_model",
]
