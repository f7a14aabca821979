"""A mixin for components whose config holds encoding and MLP mappings (tcnn-style dicts).

The component lists those fields; the mixin declares them as :meth:`sub_configs` (so ``studio
config show`` documents their keys) and runs every check :func:`build_encoding` and
:func:`build_mlp` would make in :meth:`validate_config`, when the run's config is resolved,
before anything is created.
"""

from __future__ import annotations

from typing import Any, ClassVar, Union

from studio_dreamfusion.networks.encodings import (
    find_encoding_config_class,
    validate_encoding_config,
)
from studio_dreamfusion.networks.mlp import find_mlp_config_class, validate_mlp_config


class NetworkConfigs:
    """Mixin (before the component's base class): ``encoding_fields`` maps an encoding field to
    its input dimension (a number, or the name of the config field holding it); ``mlp_fields``
    names the MLP fields. A field set to None is skipped."""

    encoding_fields: ClassVar[dict[str, Union[int, str]]] = {}
    mlp_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sub_configs(cls, cfg: Any) -> dict[str, type]:
        """The encoding and MLP mappings whose ``otype`` is known."""
        found: dict[str, Any] = {}
        for name in cls.encoding_fields:
            found[name] = find_encoding_config_class(getattr(cfg, name))
        for name in cls.mlp_fields:
            found[name] = find_mlp_config_class(getattr(cfg, name))
        return {name: sub_cls for name, sub_cls in found.items() if sub_cls is not None}

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        """Also every check :func:`build_encoding` and :func:`build_mlp` make."""
        super().validate_config(cfg, path)  # type: ignore[misc]
        for name, dims in cls.encoding_fields.items():
            value = getattr(cfg, name)
            if value is not None:
                n_input = dims if isinstance(dims, int) else getattr(cfg, dims)
                validate_encoding_config(value, f"{path}.{name}", n_input)
        for name in cls.mlp_fields:
            value = getattr(cfg, name)
            if value is not None:
                validate_mlp_config(value, f"{path}.{name}")
