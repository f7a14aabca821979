"""Module base classes: typed configs and once-per-step updates."""

from __future__ import annotations

import attrs
import pytest
import torch

from studio.base import BaseModule, BaseObject, Updateable
from studio.errors import ConfigError


class Counter(BaseModule):
    @attrs.define(kw_only=True)
    class Config(BaseModule.Config):
        size: int = 2

    def configure(self) -> None:
        self.weight = torch.nn.Parameter(torch.zeros(self.cfg.size))
        self.calls: list[int] = []

    def update_step(self, epoch, global_step, on_load_weights=False):
        self.calls.append(global_step)


class Holder(BaseModule):
    def configure(self, shared: Counter) -> None:
        self.shared = shared
        self.child = Counter({"size": 3})
        self.helpers = [shared]
        self.calls: list[int] = []

    @property
    def alias(self) -> Counter:  # properties are not walked (the reference updated these twice)
        return self.shared

    def update_step(self, epoch, global_step, on_load_weights=False):
        self.calls.append(global_step)


class Guidance(BaseObject):
    def configure(self, owner: Holder) -> None:
        self.owner = owner
        self.calls: list[int] = []

    def update_step(self, epoch, global_step, on_load_weights=False):
        self.calls.append(global_step)


def test_each_updateable_is_updated_once_per_step():
    shared = Counter()
    holder = Holder(shared=shared)
    guidance = Guidance(owner=holder)
    holder.guidance = guidance  # a plain object hanging off a module
    holder.do_update_step(0, 5)
    holder.do_update_step(0, 6)
    assert shared.calls == [5, 6]
    assert holder.child.calls == [5, 6]
    assert holder.calls == [5, 6]
    assert guidance.calls == [5, 6]


def test_children_update_before_parents():
    order: list[str] = []

    class Leaf(Updateable):
        def update_step(self, epoch, global_step, on_load_weights=False):
            order.append("leaf")

    class Root(Updateable):
        def __init__(self):
            self.leaf = Leaf()

        def update_step(self, epoch, global_step, on_load_weights=False):
            order.append("root")

    Root().do_update_step(0, 1)
    assert order == ["leaf", "root"]


def test_update_order_is_a_depth_first_post_order_over_shared_children():
    """Children in attribute order, each object once, at its first reach (the order the
    recursive definition gives)."""
    order: list[str] = []

    class Node(Updateable):
        def __init__(self, name: str, *children: Updateable):
            self.name, self.children = name, list(children)

        def update_step(self, epoch, global_step, on_load_weights=False):
            order.append(self.name)

    shared = Node("shared", Node("deep"))
    left = Node("left", Node("a"), shared)
    right = Node("right", shared, Node("b"))
    root = Node("root", left, right, shared)
    root.back = root  # a cycle
    root.do_update_step(0, 1)
    assert order == ["a", "deep", "shared", "left", "b", "right", "root"]


def test_updateables_inside_torch_containers_are_updated():
    """torch's own modules are walked through their sub-modules only (their other attributes
    are parameters, hooks and sizes), so an Updateable in a ModuleList or Sequential counts."""
    listed, sequenced = Counter(), Counter()
    holder = Holder(shared=Counter())
    holder.stack = torch.nn.ModuleList([listed, torch.nn.Sequential(torch.nn.ReLU(), sequenced)])
    holder.do_update_step(0, 3)
    assert listed.calls == [3] and sequenced.calls == [3]


def test_module_config_is_strict():
    with pytest.raises(ConfigError, match="siz: unknown key"):
        Counter({"siz": 3})
    assert Counter({"size": 4}).weight.shape == (4,)
