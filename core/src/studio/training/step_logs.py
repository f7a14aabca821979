"""A training step's logged scalars, read back from the GPU without stalling the next step.

Calling ``.item()`` on each loss right after ``backward()`` makes the host wait for the GPU to
finish the whole backward pass before it can issue the optimizer step and the next batch; in a
launch-bound loop (a DreamFusion step) that wait is pure loss. :class:`StepLogs` instead queues
one device-to-host copy of all the step's scalar tensors at the end of the step and reads it when
the *next* step has been issued, by which time the copy is long done. Logs and the progress bar
therefore trail the training by one step; :meth:`values` returns exact values.
"""

from __future__ import annotations

from typing import Any

import torch


def loggable(value: Any) -> torch.Tensor | float | None:
    """A loggable scalar: a detached one-element float tensor (left on its device) or a number;
    ``None`` for anything else (images, flags, strings)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.detach().float().reshape(())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


class StepLogs:
    """The scalars logged at one step: plain numbers, and one-element tensors copied to the host
    asynchronously (``values()`` waits for that copy only, not for later work on the device)."""

    def __init__(self, step: int, logs: dict[str, Any]):
        self.step = step
        self._numbers: dict[str, float] = {}
        self._names: list[str] = []
        tensors: list[torch.Tensor] = []
        for name, value in logs.items():
            scalar = loggable(value)
            if scalar is None:
                continue
            if isinstance(scalar, torch.Tensor) and scalar.device.type != "cpu":
                self._names.append(name)
                tensors.append(scalar)
            else:  # a number, or a CPU tensor: read now, there is no device to wait for
                self._numbers[name] = float(scalar)
        self._host: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None
        if tensors:
            stacked = torch.stack([t.to(tensors[0].device) for t in tensors])
            if stacked.is_cuda:
                self._host = torch.empty(stacked.shape, dtype=stacked.dtype, pin_memory=True)
                self._host.copy_(stacked, non_blocking=True)
                self._copied = torch.cuda.Event()
                self._copied.record()
            else:
                self._host = stacked

    def values(self) -> dict[str, float]:
        """Every logged name -> float (device tensors first, then numbers and CPU tensors)."""
        if self._copied is not None:
            self._copied.synchronize()
        read = self._host.tolist() if self._host is not None else []
        return {**dict(zip(self._names, read, strict=True)), **self._numbers}


#: Logged 1.0 for a step whose update was skipped (a non-finite loss or gradient), else 0.0.
NONFINITE = "train/nonfinite"


class SkippedSteps:
    """Counts the steps skipped for a non-finite loss or gradient, from their logged
    :data:`NONFINITE` flags (fed in step order, as they are read back: no extra host sync).

    Also keeps the ``train/*`` values of the last step that was not skipped, for the message that
    stops a run after too many skipped steps in a row."""

    def __init__(self) -> None:
        self.consecutive = 0
        self.total = 0
        self.streak_start: int | None = None
        self.last_good_step: int | None = None
        self.last_good_losses: dict[str, float] = {}

    def observe(self, step: int, values: dict[str, float]) -> bool:
        """Count step ``step`` with its logged ``values``; True when its update was skipped."""
        if values.get(NONFINITE, 0.0) > 0:
            if self.consecutive == 0:
                self.streak_start = step
            self.consecutive += 1
            self.total += 1
            return True
        self.consecutive = 0
        self.streak_start = None
        self.last_good_step = step
        self.last_good_losses = {
            k: v for k, v in values.items() if k.startswith("train/") and k != NONFINITE
        }
        return False
