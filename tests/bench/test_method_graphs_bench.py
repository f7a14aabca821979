"""bench/method_graphs.py's offline part: every preset it times resolves with its overrides, and
its step is capturable (on the CPU only the renderer's torch marching is left; CUDA marches with
nerfacc), so the GPU run times graphs, not a fallback."""

from __future__ import annotations

import pytest

from tests.bench.loading import load_bench
from tests.plugins.dreamfusion.preset_systems import preset_system

bench = load_bench("method_graphs")


@pytest.mark.parametrize("preset", list(bench.PRESETS))
def test_each_benched_preset_can_be_captured(preset: str) -> None:
    cls_path, overrides, first_step = bench.PRESETS[preset]
    system = preset_system(preset, bench.system_class(cls_path), overrides, fixed_capacity=True)
    assert system.graph_blockers() == [
        "system.renderer marches with the torch backend, not nerfacc"
    ]
    assert first_step > 0
