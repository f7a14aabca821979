"""Scheduled scalars: a number, or a linear ramp evaluated at the current training step.

Forms (the reference's):

* ``x`` -- constant.
* ``[start_value, end_value, end_step]`` -- ramp from step 0 to ``end_step``.
* ``[start_step, start_value, end_value, end_step]`` -- ramp between the two steps; before
  ``start_step`` the value is ``start_value``, after ``end_step`` it is ``end_value``.
  ``[5000, 0.98, 0.5, 5001]`` is therefore a step change at 5000.

Config fields typed :data:`Scheduled` accept these forms and reject anything else when the config
is loaded, so a malformed schedule is caught before training starts.
"""

from __future__ import annotations

import math
from typing import NewType, Union

Number = Union[int, float]

#: Annotation for config fields holding a constant or a schedule (validated by the converter).
Scheduled = NewType("Scheduled", object)


def validate_schedule(value: object) -> float | list[float | int]:
    """Return ``value`` normalised (floats, integer steps) or raise ``ValueError`` explaining why."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number or a schedule list, got the boolean {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"expected a number or a schedule list like [start_step, start, end, end_step], "
            f"got {value!r}"
        )
    if len(value) not in (3, 4):
        raise ValueError(
            f"a schedule has 3 elements [start, end, end_step] or 4 elements "
            f"[start_step, start, end, end_step]; got {len(value)}: {list(value)!r}"
        )
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"schedule elements must be numbers; got {item!r} in {list(value)!r}")
        if not math.isfinite(item):
            raise ValueError(f"schedule elements must be finite; got {item!r} in {list(value)!r}")
    steps = [value[-1]] if len(value) == 3 else [value[0], value[-1]]
    for step in steps:
        if float(step) != int(step):
            raise ValueError(
                f"schedule steps must be whole numbers of training steps; got {step!r} in "
                f"{list(value)!r}"
            )
    if len(value) == 3:
        return [float(value[0]), float(value[1]), int(value[2])]
    start_step, end_step = int(value[0]), int(value[3])
    if end_step <= start_step:
        raise ValueError(
            f"schedule end_step ({end_step}) must be greater than start_step ({start_step}) "
            f"in {list(value)!r}"
        )
    return [start_step, float(value[1]), float(value[2]), end_step]


def scheduled_value(value: object, step: int) -> float:
    """Evaluate a constant or schedule at ``step`` (linear interpolation, clamped at both ends)."""
    normalised = validate_schedule(value)
    if isinstance(normalised, float):
        return normalised
    if len(normalised) == 3:
        start_value, end_value, end_step = normalised
        start_step = 0
    else:
        start_step, start_value, end_value, end_step = normalised
    span = max(int(end_step) - int(start_step), 1)
    t = min(max((step - int(start_step)) / span, 0.0), 1.0)
    return float(start_value + (end_value - start_value) * t)


def schedule_max(value: object) -> float:
    """The largest value a schedule ever takes (e.g. to decide whether a loss is ever on)."""
    normalised = validate_schedule(value)
    if isinstance(normalised, float):
        return normalised
    ends = normalised[:2] if len(normalised) == 3 else normalised[1:3]
    return float(max(ends))
