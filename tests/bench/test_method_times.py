"""bench/method_times.py: every stage of every method has a measured step for each of its
phases, the phases split where the presets say, and the minutes follow from them."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.bench.loading import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("method_times")


@pytest.fixture(scope="module")
def configs(bench: ModuleType) -> dict:
    presets = {p for stages in bench.METHODS.values() for p in stages}
    return {p: bench.stage_config(p) for p in presets}


def test_every_phase_of_every_stage_is_measured_and_every_measurement_used(bench, configs):
    used = set()
    for stages in bench.METHODS.values():
        for preset in stages:
            for phase, steps in bench.phases(preset, configs[preset]).items():
                assert (preset, phase) in bench.MEASURED, (preset, phase)
                assert steps > 0
                used.add((preset, phase))
    assert used == set(bench.MEASURED)


def test_phases_split_where_the_presets_say(bench, configs):
    assert bench.phases("fantasia3d", configs["fantasia3d"]) == {"latent": 1000, "rest": 9000}
    assert bench.phases("prolificdreamer", configs["prolificdreamer"]) == {
        "before": 5000,
        "rest": 20000,
    }
    assert bench.phases("sjc", configs["sjc"]) == {"all": 10000}


def test_minutes_and_the_table(bench, configs):
    fantasia = bench.METHODS["Fantasia3D (`fantasia3d-full`)"]
    expected = (1000 * 40.8 + 9000 * 78.7 + 5000 * 95.0) / 60000
    assert bench.method_minutes(fantasia, configs) == pytest.approx(expected)
    rows = bench.table(configs).splitlines()
    assert len(rows) == 2 + len(bench.METHODS)
    row = next(r for r in rows if r.startswith("| Fantasia3D"))
    ratio = f"{45 / expected:.1f}x"
    assert f"| {expected:.1f} | {expected:.1f} | 45 min | {ratio} / {ratio} | no |" in row


def test_captured_minutes_take_the_captured_step_where_a_stage_has_one(bench, configs, monkeypatch):
    assert set(bench.CAPTURED) <= set(bench.MEASURED)  # a captured stage also has its eager step
    monkeypatch.setitem(bench.CAPTURED, ("dreamfusion-sd", "all"), bench.Measured(30.0, "test"))
    stages = bench.METHODS["DreamFusion-SD (`dreamfusion-sd`)"]
    assert bench.method_minutes(stages, configs, captured=True) == pytest.approx(5.0)
    eager = bench.MEASURED[("dreamfusion-sd", "all")].ms * 10000 / 60000
    assert bench.method_minutes(stages, configs) == pytest.approx(eager)
    row = next(r for r in bench.table(configs).splitlines() if r.startswith("| DreamFusion-SD"))
    assert row.endswith(f"| 30 min | {30 / eager:.1f}x / 6.0x | yes |")
