"""Base classes for everything a config builds: per-step updates and typed configs.

* :class:`Updateable` -- reacts to the global step (``update_step``). ``do_update_step`` walks the
  object's attributes and sub-modules and calls ``update_step`` exactly once per object per call,
  children before parents (the reference could call it twice through properties; we do not).
* :class:`BaseObject` -- a configurable plain object (guidance, prompt processors, exporters, data).
* :class:`BaseModule` -- a configurable ``nn.Module`` (geometry, materials, backgrounds, renderers).

Each subclass declares a nested attrs class ``Config`` (``@attrs.define(kw_only=True)``); the
constructor accepts a mapping (structured strictly) or a ``Config`` instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Optional

import attrs
import torch
from torch import nn

from studio.config.convert import structure


class Updateable:
    """Something whose state depends on the training step."""

    def update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        """Called once per training step (and after loading weights); override to react."""

    def do_update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        """Call ``update_step`` on every reachable :class:`Updateable`, each exactly once."""
        for obj in iter_updateables(self):
            obj.update_step(epoch, global_step, on_load_weights=on_load_weights)


#: What every ``nn.Module`` keeps in its ``__dict__`` (parameters, buffers, hooks, ``_modules``):
#: never an Updateable, so not walked (sub-modules are reached through ``_modules`` directly).
_MODULE_INTERNALS = frozenset(vars(nn.Module()))


def _children(obj: object) -> Iterator[object]:
    if isinstance(obj, nn.Module):
        yield from obj._modules.values()
        if type(obj).__module__.startswith("torch."):  # Linear, Sequential, ...: nothing else
            return
        attributes = [v for k, v in vars(obj).items() if k not in _MODULE_INTERNALS]
    else:
        attributes = list(vars(obj).values())
    for value in attributes:
        if isinstance(value, (list, tuple)):
            yield from value
        elif isinstance(value, dict) and not isinstance(value, nn.Module):
            yield from value.values()
        else:
            yield value


def iter_updateables(root: object) -> Iterator[Updateable]:
    """Every :class:`Updateable` reachable from ``root`` through attributes, post-order, no repeats."""
    seen: set[int] = set()

    def visit(obj: object) -> Iterator[Updateable]:
        if id(obj) in seen or not isinstance(obj, (Updateable, nn.Module)):
            return
        seen.add(id(obj))
        for child in _children(obj):
            yield from visit(child)
        if isinstance(obj, Updateable):
            yield obj

    yield from visit(root)


def parse_config(cls: type, cfg: Any, path: str = "") -> Any:
    """``cfg`` as an instance of ``cls.Config`` (a mapping is structured strictly)."""
    config_cls = cls.Config
    if isinstance(cfg, config_cls):
        return cfg
    return structure(cfg if cfg is not None else {}, config_cls, path)


class BaseObject(Updateable):
    """A configurable object that is not an ``nn.Module`` (not checkpointed, not synced)."""

    @attrs.define(kw_only=True)
    class Config:
        pass

    cfg: Any
    config_path: ClassVar[str] = ""

    def __init__(self, cfg: Any = None, *, device: Optional[torch.device] = None, **kwargs: Any):
        self.cfg = parse_config(type(self), cfg, self.config_path)
        self.device = device if device is not None else torch.device("cpu")
        self.configure(**kwargs)

    def configure(self, **kwargs: Any) -> None:
        """Build state from ``self.cfg``; called once by the constructor."""


class BaseModule(nn.Module, Updateable):
    """A configurable ``nn.Module``; its parameters are trained and checkpointed with the system.

    ``Config.weights = "path/to/last.ckpt:prefix"`` loads the module's parameters from the entries of
    a studio checkpoint whose keys start with ``prefix.`` (e.g. ``geometry``).
    """

    @attrs.define(kw_only=True)
    class Config:
        weights: Optional[str] = None

    cfg: Any
    config_path: ClassVar[str] = ""

    def __init__(self, cfg: Any = None, **kwargs: Any):
        super().__init__()
        self.cfg = parse_config(type(self), cfg, self.config_path)
        self.configure(**kwargs)
        if getattr(self.cfg, "weights", None):
            self.load_weights_from(self.cfg.weights)

    def configure(self, **kwargs: Any) -> None:
        """Build sub-modules and parameters from ``self.cfg``; called once by the constructor."""

    def load_weights_from(self, spec: str) -> None:
        from studio.training.checkpoint import load_module_weights

        path, _, prefix = spec.rpartition(":") if ":" in spec else (spec, "", "")
        self.load_state_dict(load_module_weights(path, prefix), strict=True)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")
