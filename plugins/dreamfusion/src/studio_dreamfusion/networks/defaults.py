"""Default encoding/MLP configs of the reference (fresh dicts, for attrs ``Factory`` defaults)."""

from __future__ import annotations

from typing import Any


def hash_grid() -> dict[str, Any]:
    """16 levels x 2 features, 2^19 table, base 16, scale 1.4473 (finest level ~4096)."""
    return {
        "otype": "HashGrid",
        "n_levels": 16,
        "n_features_per_level": 2,
        "log2_hashmap_size": 19,
        "base_resolution": 16,
        "per_level_scale": 1.447269237440378,
    }


def spherical_harmonics(degree: int = 3) -> dict[str, Any]:
    return {"otype": "SphericalHarmonics", "degree": degree}


def mlp(otype: str, n_neurons: int, n_hidden_layers: int) -> dict[str, Any]:
    return {
        "otype": otype,
        "activation": "ReLU",
        "output_activation": "none",
        "n_neurons": n_neurons,
        "n_hidden_layers": n_hidden_layers,
    }
