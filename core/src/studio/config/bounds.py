"""Declared bounds of config values, checked with the rest of the config.

A field annotated ``Annotated[int, Range(low=1)]`` (or one of the aliases below) is refused
outside its range when the config is structured, so the error names the key, the value and the
allowed range, before anything is created. Bounds apply to every element of a list value (a
per-milestone ``height: [64, 256]``); :class:`Ordered` asks a ``[low, high]`` pair to be
increasing. Every float in a config must be finite anyway (the strict converter refuses NaN and
infinities everywhere).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Optional, Union

import attrs


@attrs.frozen
class Range:
    """``low <= value <= high`` (either side open when None)."""

    low: Optional[float] = None
    high: Optional[float] = None

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {_number(self.low)} and {_number(self.high)}"
        if self.low is not None:
            return f"at least {_number(self.low)}"
        return f"at most {_number(self.high)}"

    def check(self, value: Any) -> None:
        for item in _numbers(value):
            if (self.low is not None and item < self.low) or (
                self.high is not None and item > self.high
            ):
                raise ValueError(f"must be {self.describe()}, got {_number(item)}")


@attrs.frozen
class Ordered:
    """A ``[low, high]`` pair with ``low <= high``."""

    def describe(self) -> str:
        return "an increasing [low, high] pair"

    def check(self, value: Any) -> None:
        items = list(value) if isinstance(value, (list, tuple)) else None
        if items is None or len(items) != 2:
            raise ValueError(f"must be a [low, high] pair, got {value!r}")
        if items[0] > items[1]:
            raise ValueError(
                f"must be a [low, high] pair with low <= high, got [{_number(items[0])}, "
                f"{_number(items[1])}] (reversed?)"
            )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _numbers(value: Any) -> Iterable[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _numbers(item)]
    return []


def check_bounds(value: Any, metadata: Iterable[Any]) -> None:
    """Run every :class:`Range` / :class:`Ordered` in ``metadata`` on ``value``."""
    if value is None:
        return
    for rule in metadata:
        if isinstance(rule, (Range, Ordered)):
            rule.check(value)


def describe_bounds(metadata: Iterable[Any]) -> str:
    """``"at least 1"``-style text for ``studio config show`` (empty without bounds)."""
    return "; ".join(r.describe() for r in metadata if isinstance(r, (Range, Ordered)))


#: Common bounded types.
PositiveInt = Annotated[int, Range(low=1)]
NonNegativeInt = Annotated[int, Range(low=0)]
PositiveFloat = Annotated[float, Range(low=1e-12)]
NonNegativeFloat = Annotated[float, Range(low=0.0)]
UnitFloat = Annotated[float, Range(low=0.0, high=1.0)]
#: Image sides in pixels (a cap well above any preset: 100000 would allocate tens of GB).
PixelSize = Annotated[int, Range(low=1, high=8192)]
PixelSizes = Annotated[Union[int, list[int]], Range(low=1, high=8192)]
