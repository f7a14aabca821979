"""`studio config show METHOD`: every key of DreamFusion's resolved configs with value, default
and a doc line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from studio.cli.app import app


def show(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["config", "show", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("method", ["dreamfusion-sd", "dreamfusion-if", "dreamfusion-primitives"])
def test_every_key_has_a_doc(method):
    rows = show(method)
    undocumented = [row["key"] for row in rows if not row["doc"]]
    assert not undocumented, undocumented
    keys = {row["key"] for row in rows}
    assert len(keys) == len(rows) > 150
    for key in (
        "trainer.max_steps",
        "data.camera_distance_range",
        "system.geometry.radius",
        "system.geometry.pos_encoding_config.n_levels",  # a sub-config, documented by its class
        "system.geometry.mlp_network_config.n_neurons",
        "system.guidance.guidance_scale",
        "system.loss.lambda_sds",  # an entry of a free-form mapping
        "system.exporter.fmt",
    ):
        assert key in keys, key


def test_values_defaults_and_the_missing_prompt():
    rows = {row["key"]: row for row in show("dreamfusion-sd")}
    assert rows["system.geometry.radius"]["value"] == 2.0
    assert rows["system.geometry.radius"]["default"] == 1.0
    assert rows["system.prompt_processor.prompt"]["value"] == "???"  # required, not given
    assert rows["system.geometry.pos_encoding_config.n_levels"]["doc"]
    given = {row["key"]: row for row in show("dreamfusion-sd", "prompt=a cat", "seed=3")}
    assert given["system.prompt_processor.prompt"]["value"] == "a cat"
    assert given["seed"]["value"] == 3 and given["tag"]["value"] == "a_cat"


def test_text_output_has_a_doc_line_under_every_key():
    result = CliRunner().invoke(app, ["config", "show", "dreamfusion-primitives"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("method = 'dreamfusion-primitives'")
    keys, docs = lines[0::2], lines[1::2]
    assert len(keys) == len(docs) and all(d.startswith("    ") and d.strip() for d in docs)
    assert "(undocumented)" not in result.output
    assert "system.renderer.num_samples_per_ray = 32  (default: " in result.output


def test_a_bad_override_is_one_paragraph():
    result = CliRunner().invoke(
        app, ["config", "show", "dreamfusion-sd", "system.geometry.radiuss=1"]
    )
    assert result.exit_code == 2
    assert "did you mean 'system.geometry.radius'" in result.output
