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
