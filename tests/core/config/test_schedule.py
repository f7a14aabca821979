from __future__ import annotations

import pytest

from studio.config.schedule import schedule_max, scheduled_value, validate_schedule


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [
        (3, 100, 3.0),
        (0.5, 0, 0.5),
        ([10.0, 1000.0, 5000], 0, 10.0),
        ([10.0, 1000.0, 5000], 2500, 505.0),
        ([10.0, 1000.0, 5000], 9000, 1000.0),
        ([0, 10.0, 1000.0, 5000], 1000, 10.0 + 990.0 * 0.2),
        ([5000, 0.98, 0.5, 5001], 4999, 0.98),
        ([5000, 0.98, 0.5, 5001], 5000, 0.98),
        ([5000, 0.98, 0.5, 5001], 5001, 0.5),
        ([100, 1.0, 0.0, 200], 50, 1.0),
        ([100, 1.0, 0.0, 200], 150, 0.5),
    ],
)
def test_scheduled_values(value, step, expected):
    assert scheduled_value(value, step) == pytest.approx(expected)


@pytest.mark.parametrize(
    "bad",
    [
        True,
        "0.1",
        [1, 2],
        [1, 2, 3, 4, 5],
        [0, 1.0, 2.0, 100.5],
        [100, 1.0, 2.0, 50],
        [0, "a", 1, 2],
    ],
)
def test_malformed_schedules_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_schedule(bad)


def test_schedule_max():
    assert schedule_max([0, 10.0, 1000.0, 5000]) == 1000.0
    assert schedule_max([1.0, 0.0, 100]) == 1.0
    assert schedule_max(0.0) == 0.0
