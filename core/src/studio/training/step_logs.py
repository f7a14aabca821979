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


class HostCopy:
    """A tensor copied to the host without waiting for the device: a CUDA tensor goes to pinned
    memory by a non-blocking copy marked by an event; a CPU tensor is cloned. Either way later
    in-place writes to ``tensor`` (a reused buffer) do not reach the copy. :meth:`ready` never
    waits; :meth:`get` waits for this copy only, not for later work."""

    def __init__(self, tensor: torch.Tensor):
        tensor = tensor.detach()
        self._copied: torch.cuda.Event | None = None
        if tensor.is_cuda:
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()
        else:
            self._host = tensor.clone()

    def ready(self) -> bool:
        """Whether the copy has landed (always, for a CPU tensor)."""
        return self._copied is None or self._copied.query()

    def get(self) -> torch.Tensor:
        """The host tensor, once the copy has landed."""
        if self._copied is not None:
            self._copied.synchronize()
        return self._host


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
        self._copy = (
            HostCopy(torch.stack([t.to(tensors[0].device) for t in tensors])) if tensors else None
        )

    def values(self) -> dict[str, float]:
        """Every logged name -> float (device tensors first, then numbers and CPU tensors)."""
        read = self._copy.get().tolist() if self._copy is not None else []
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
