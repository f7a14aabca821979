from __future__ import annotations

from typing import Any, Literal, Optional, Union

import attrs
import pytest

from studio.config.convert import structure
from studio.config.schedule import Scheduled
from studio.errors import ConfigError


@attrs.define(kw_only=True)
class Inner:
    radius: float = 1.0
    levels: int = 16
    mode: Literal["analytic", "finite_difference"] = "analytic"


@attrs.define(kw_only=True)
class Outer:
    inner: Inner = attrs.Factory(Inner)
    prompt: str
    flag: bool = False
    threshold: Union[float, Literal["auto"]] = 25.0
    lam: Scheduled = 1.0
    ranges: tuple[float, float] = (1.0, 1.5)
    extra: dict[str, Any] = attrs.Factory(dict)
    optional: Optional[int] = None


def test_valid_config_structures_with_defaults():
    cfg = structure({"prompt": "a cat", "inner": {"levels": 8}, "lam": [0, 1, 2, 10]}, Outer)
    assert cfg.inner == Inner(levels=8)
    assert cfg.lam == [0, 1.0, 2.0, 10]
    assert cfg.threshold == 25.0
    assert structure({"prompt": "x", "threshold": "auto"}, Outer).threshold == "auto"
    assert structure({"prompt": "x", "inner": {"radius": 2}}, Outer).inner.radius == 2.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"prompt": "x", "inner": {"radiuss": 2}},
            "system.inner.radiuss: unknown key (did you mean 'system.inner.radius'?",
        ),
        (
            {"prompt": "x", "inner": {"levels": "abc"}},
            "system.inner.levels: expected an integer, got str 'abc'",
        ),
        (
            {"prompt": "x", "inner": {"levels": 2.5}},
            "system.inner.levels: expected an integer, got the fraction 2.5",
        ),
        ({"prompt": "x", "flag": 1}, "system.flag: expected true or false, got int 1"),
        (
            {"prompt": "x", "inner": {"mode": "finite_diference"}},
            "did you mean 'finite_difference'?",
        ),
        ({"prompt": "x", "threshold": "automatic"}, "system.threshold: expected float or"),
        ({"prompt": "x", "lam": [1, 2]}, "system.lam: a schedule has 3 elements"),
        ({"prompt": ["a"]}, "system.prompt: expected a string, got list"),
        ({}, "system.prompt: a required value is missing"),
        ({"prompt": "x", "inner": 3}, "system.inner: expected a mapping"),
        ({"prompt": "x", "optional": "7"}, "system.optional: expected an integer, got str '7'"),
    ],
)
def test_errors_name_the_dotted_path(data, expected):
    with pytest.raises(ConfigError) as info:
        structure(data, Outer, "system")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message  # one paragraph
