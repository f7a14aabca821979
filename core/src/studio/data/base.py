"""Data modules: what a system trains, validates and tests on.

A data module is a :class:`~studio.base.BaseObject` registered under a name (``data_type``).
The trainer calls ``do_update_step(epoch, step)`` on it *before* drawing the batch of that step, so
step-dependent settings (resolution milestones) apply on exactly the step they name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from studio.base import BaseObject

Batch = dict[str, Any]


class DataModule(BaseObject):
    """Base class; subclasses implement the three accessors."""

    def train_batch(self) -> Batch:
        """The next training batch (training data is an endless stream)."""
        raise NotImplementedError

    def val_batches(self) -> Sequence[Batch]:
        """Validation batches, indexable (the trainer splits them across ranks)."""
        raise NotImplementedError

    def test_batches(self) -> Sequence[Batch]:
        """Test batches (e.g. the 360-degree orbit), indexable."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume the training stream exactly where it was (plain
        values and CPU tensors); the default, for modules that draw from the global RNG on every
        call, is nothing."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the training stream from a :meth:`state_dict`."""


class LazySequence(Sequence):
    """A fixed-length sequence whose items are built on access (big eval batches stay unbuilt)."""

    def __init__(self, length: int, build):
        self._length = length
        self._build = build

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Batch:  # type: ignore[override]
        if not -self._length <= index < self._length:
            raise IndexError(index)
        return self._build(index % self._length)

    def __iter__(self) -> Iterator[Batch]:
        return (self._build(i) for i in range(self._length))
