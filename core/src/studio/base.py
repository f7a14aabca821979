"""Base classes for everything a config builds: per-step updates and typed configs.

* :class:`Updateable` -- reacts to the global step (``update_step``). ``do_update_step`` walks the
  object's attributes and sub-modules and calls ``update_step`` exactly once per object per call,
  children before parents (the reference could call it twice through properties; we do not).
* :class:`BaseObject` -- a configurable plain object (guidance, prompt processors, exporters, data).
  It may own trainable modules (:meth:`BaseObject.trainable_modules`): the trainer optimizes and
  checkpoints their trainable parameters (ProlificDreamer's LoRA); frozen weights are never saved.
* :class:`BaseModule` -- a configurable ``nn.Module`` (geometry, materials, backgrounds, renderers).

Each subclass declares a nested attrs class ``Config`` (``@attrs.define(kw_only=True)``); the
constructor accepts a mapping (structured strictly) or a ``Config`` instance, and the dotted path
of that config (``config_path="system.geometry"``, used in every error message; the class's
``config_path`` is the default). ``validate_config(cfg, path)`` is called on the structured config
when a run's config is resolved, before anything is created: override it to check what the types
cannot say (free-form sub-configs such as encodings, paths that must exist).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Optional

import attrs
import torch
from torch import nn

from studio.config.convert import structure
from studio.errors import StudioError


class Updateable:
    """Something whose state depends on the training step."""

    def update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        """Called once per training step (and after loading weights); override to react."""

    def do_update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        """Call ``update_step`` on every reachable :class:`Updateable`, each exactly once."""
        for obj in iter_updateables(self):
            obj.update_step(epoch, global_step, on_load_weights=on_load_weights)

    def graph_state(self) -> Hashable:
        """The host-side state the next training call's kernels depend on, for a captured
        (CUDA graph) step: called once before every graphed step, after ``update_step``.

        A CUDA graph replays the kernels it recorded with the Python values they were launched
        with, so every per-step decision taken on the host (a random shading draw, a schedule's
        phase, a buffer size) must either be drawn here and returned (the graph is keyed by it:
        a new value captures a new graph) or live in a device tensor updated in place outside
        the graph. A class opts in by defining this method itself (a subclass too: it may add
        host state, so it re-declares, e.g. ``graph_state = Parent.graph_state``); ``()``: none.
        """
        return ()

    def graph_blocker(self) -> str | None:
        """Why this object's training call cannot be captured as configured (None: it can).

        The default: None when the object's own class defines :meth:`graph_state`, else a
        message saying it does not. Override to refuse a config (say, a host-side random
        augmentation)."""
        if "graph_state" in type(self).__dict__:
            return None
        where = getattr(self, "config_path", "") or type(self).__name__
        return (
            f"{where} ({type(self).__name__}) does not declare the host state its training call "
            "depends on (graph_state)"
        )


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


def check_sub_configs(cls: Any, cfg: Any, path: str) -> None:
    """Structure each of ``cls.sub_configs(cfg)`` strictly (a ``ConfigError`` names its path)."""
    for name, sub_cls in cls.sub_configs(cfg).items():
        structure(getattr(cfg, name), sub_cls, f"{path}.{name}")


def parse_config(cls: type, cfg: Any, path: str = "") -> Any:
    """``cfg`` as an instance of ``cls.Config`` (a mapping is structured strictly)."""
    config_cls = cls.Config
    if isinstance(cfg, config_cls):
        return cfg
    return structure(cfg if cfg is not None else {}, config_cls, path)


class Configurable:
    """What every configurable class shares: its config's dotted path and the class-level
    config checks run when a run's config is resolved."""

    cfg: Any
    config_path: str = ""

    @classmethod
    def sub_configs(cls, cfg: Any) -> dict[str, type]:
        """Free-form mapping fields of ``cfg`` whose content is an attrs config of its own (an
        encoding chosen by its ``otype``): field name -> that attrs class. They are structured
        strictly by :meth:`validate_config` and documented by ``studio config show``."""
        return {}

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        """Check a structured config beyond its types (raise ``ConfigError`` naming ``path``).

        Called when a run's config is resolved, before anything is created. The default
        structures every :meth:`sub_configs` mapping strictly; override to check more (call
        ``super().validate_config(cfg, path)``)."""
        check_sub_configs(cls, cfg, path)

    def _set_config(self, cfg: Any, config_path: Optional[str]) -> None:
        if config_path is not None:
            self.config_path = config_path
        self.cfg = parse_config(type(self), cfg, self.config_path)


class BaseObject(Configurable, Updateable):
    """A configurable object that is not an ``nn.Module``.

    Its state is not checkpointed or synced across ranks, except the trainable parameters of
    :meth:`trainable_modules`."""

    @attrs.define(kw_only=True)
    class Config:
        pass

    def __init__(
        self,
        cfg: Any = None,
        *,
        device: Optional[torch.device] = None,
        config_path: Optional[str] = None,
        **kwargs: Any,
    ):
        self._set_config(cfg, config_path)
        self.device = device if device is not None else torch.device("cpu")
        self.configure(**kwargs)

    def configure(self, **kwargs: Any) -> None:
        """Build state from ``self.cfg``; called once by the constructor."""

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Modules holding parameters this object trains (name -> module; default none).

        Only their parameters with ``requires_grad`` are optimized (optimizer group named after
        the object's attribute in the system, e.g. ``guidance``) and saved in checkpoints, so a
        frozen pretrained network inside one of them is never written."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters of :meth:`trainable_modules` that require gradients."""
        return [p for _, p in self.trainable_named_parameters()]

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [
            (f"{name}.{key}", param)
            for name, module in self.trainable_modules().items()
            for key, param in module.named_parameters()
            if param.requires_grad
        ]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable parameters' values (detached), keyed ``<module name>.<parameter>``."""
        return {name: param.detach() for name, param in self.trainable_named_parameters()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], where: str = "") -> None:
        """Restore :meth:`trainable_state_dict` exactly; a missing, extra or misshapen entry is a
        ``StudioError`` naming it (``where`` says whose state it is)."""
        own = dict(self.trainable_named_parameters())
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise StudioError(
                f"{where or type(self).__name__}: the saved trainable state does not match this "
                f"object's (missing {missing or 'none'}, unexpected {extra or 'none'}). Was the "
                "checkpoint written with another configuration?"
            )
        with torch.no_grad():
            for name, param in own.items():
                value = state[name]
                if tuple(value.shape) != tuple(param.shape):
                    raise StudioError(
                        f"{where or type(self).__name__}: {name} has shape {tuple(param.shape)} "
                        f"here but {tuple(value.shape)} in the checkpoint."
                    )
                param.copy_(value.to(param.device, param.dtype))


class BaseModule(nn.Module, Configurable, Updateable):
    """A configurable ``nn.Module``; its parameters are trained and checkpointed with the system.

    ``Config.weights = "path/to/last.ckpt:prefix"`` loads the module's parameters from the entries of
    a studio checkpoint whose keys start with ``prefix.`` (e.g. ``geometry``).
    """

    @attrs.define(kw_only=True)
    class Config:
        weights: Optional[str] = None
        """Initial weights from a studio checkpoint file or run directory, ``PATH:prefix`` for a
        component (its entries under ``prefix.``, e.g. ``geometry``); None starts fresh."""

    def __init__(self, cfg: Any = None, *, config_path: Optional[str] = None, **kwargs: Any):
        super().__init__()
        self._set_config(cfg, config_path)
        self.configure(**kwargs)
        if getattr(self.cfg, "weights", None):
            self.load_weights_from(self.cfg.weights)

    def configure(self, **kwargs: Any) -> None:
        """Build sub-modules and parameters from ``self.cfg``; called once by the constructor."""

    def load_weights_from(self, spec: str) -> None:
        """Load ``weights: "PATH:prefix"``: the checkpoint entries under ``prefix.`` (PATH is a
        checkpoint file or a run directory)."""
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
