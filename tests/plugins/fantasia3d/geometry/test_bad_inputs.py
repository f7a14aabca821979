"""Bad ``implicit-sdf`` configs are refused when the run's config is resolved (``validate_tree``,
before anything is created) and again by the constructor: one paragraph naming the key, the
value and the fix."""

from __future__ import annotations

import pytest
import trimesh

from studio.config.resolve import validate_tree
from studio.errors import ConfigError
from studio_fantasia3d.geometry.implicit_sdf import ImplicitSDF
from tests.plugins.fantasia3d.geometry.surfaces import TINY_GRID

PATH = "system.geometry"
SPHERE = {"shape_init": "sphere", "shape_init_params": 0.5}

CASES = [
    # shape_init with a bias: the reference says not to combine them
    ({**SPHERE, "sdf_bias": 0.1}, ["shape_init='sphere'", "sdf_bias=0.1", "sdf_bias=0.0"]),
    (
        {**SPHERE, "sdf_bias": "sphere", "sdf_bias_params": 0.5},
        ["sdf_bias='sphere'", "shape_init=null"],
    ),
    # parameters
    ({"shape_init": "sphere"}, ["shape_init_params=None", "radius", "shape_init_params=0.5"]),
    ({"shape_init": "sphere", "shape_init_params": [0.5]}, ["single number"]),
    ({"shape_init": "sphere", "shape_init_params": -0.5}, ["shape_init_params=-0.5", "positive"]),
    (
        {"shape_init": "sphere", "shape_init_params": 1.2},
        ["shape_init_params=1.2", "leaves the box"],
    ),
    (
        {"shape_init": "ellipsoid", "shape_init_params": [0.3, 0.8]},
        ["shape_init_params=[0.3, 0.8]", "three radii", "[0.3, 0.3, 0.8]"],
    ),
    ({"shape_init": "ellipsoid", "shape_init_params": 0.5}, ["three radii"]),
    (
        {"shape_init": "ellipsoid", "shape_init_params": [0.3, -0.3, 0.8]},
        ["[0.3, -0.3, 0.8]", "positive"],
    ),
    ({"sdf_bias": "ellipsoid"}, ["sdf_bias_params=None", "three radii"]),
    ({"sdf_bias": "sphere", "sdf_bias_params": 0.0}, ["sdf_bias_params=0.0", "positive"]),
    # names
    ({"shape_init": "cube", "shape_init_params": 0.5}, ["shape_init='cube'", "mesh:PATH"]),
    ({"shape_init": "sphre", "shape_init_params": 0.5}, ["did you mean 'sphere'"]),
    ({"sdf_bias": "blob"}, [f"{PATH}.sdf_bias", "'blob'"]),
    ({"shape_init_mesh_up": "y"}, [f"{PATH}.shape_init_mesh_up", "'+y'", "'y'"]),
    ({"normal_type": "finite"}, [f"{PATH}.normal_type", "finite_difference"]),
    ({"force_shape_init": True}, ["force_shape_init=true", "shape_init", "null"]),
    # grid and field
    (
        {"isosurface_deformable_grid": True, "isosurface_method": "mc-cpu"},
        ["isosurface_deformable_grid=true", "isosurface_method='mc-cpu'", "isosurface_method=mt"],
    ),
    ({"n_input_dims": 2}, ["n_input_dims=2", "set it to 3"]),
    ({"finite_difference_normal_eps": 0.0}, ["finite_difference_normal_eps", "at least"]),
    ({"shape_init_steps": 0}, ["shape_init_steps", "at least 1"]),
    ({"pos_encoding_config": {"otype": "HashGird"}}, ["pos_encoding_config", "HashGrid"]),
]


def refuse(data: dict, *expected: str) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_tree(ImplicitSDF.Config, data, PATH, ImplicitSDF)
    message = str(caught.value)
    assert "\n" not in message, message
    for text in expected:
        assert text in message, (text, message)
    return message


@pytest.mark.parametrize(("data", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_bad_config_is_refused_in_one_paragraph(data, expected):
    refuse(data, *expected)
    with pytest.raises(ConfigError):  # constructing it directly is refused too
        ImplicitSDF({**data, "pos_encoding_config": data.get("pos_encoding_config", TINY_GRID)})


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_mesh_init_is_checked_against_the_filesystem(here):
    mesh = {"shape_init": "mesh:shapes/ball.obj", "shape_init_params": 0.9}
    message = refuse(mesh, "shape_init='mesh:shapes/ball.obj'", "no such mesh file", "working")
    assert str(here / "shapes" / "ball.obj") in message  # where it looked
    (here / "shapes").mkdir()
    trimesh.creation.icosphere(subdivisions=1).export(here / "shapes" / "ball.obj")
    validate_tree(ImplicitSDF.Config, mesh, PATH, ImplicitSDF)  # now accepted
    refuse({**mesh, "shape_init_params": None}, "shape_init_params=None", "mesh's size")
    refuse({**mesh, "shape_init_params": [0.9]}, "shape_init_params=[0.9]")
    refuse(
        {**mesh, "shape_init_mesh_up": "+y", "shape_init_mesh_front": "-y"},
        "shape_init_mesh_up='+y'",
        "shape_init_mesh_front='-y'",
        "orthogonal",
    )
    refuse({"shape_init": "mesh:", "shape_init_params": 0.9}, "no such mesh file")
    assert not (here / "outputs").exists()  # nothing was created
