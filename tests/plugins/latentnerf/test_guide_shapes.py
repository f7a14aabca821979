"""Sketch-Shape's guide shapes: the built-ins, and files refused or warned about."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from studio.errors import ConfigError
from studio_latentnerf.guide_shapes import BUILTIN_SHAPES, load_guide_shape
from studio_latentnerf.shape_loss import place_guide_mesh, winding_numbers


@pytest.mark.parametrize("name", list(BUILTIN_SHAPES))
def test_builtins_are_closed_and_stand_along_y(name: str) -> None:
    mesh = load_guide_shape(name)
    assert mesh.is_watertight and len(mesh.faces) > 0, name
    placed = place_guide_mesh(mesh.vertices)
    # closed: winding numbers are whole numbers (2 where a composite's parts overlap)
    probes = np.random.default_rng(0).uniform(-0.8, 0.8, (1000, 3))
    winding = winding_numbers(placed, mesh.faces, probes)
    assert np.all(np.abs(winding - np.round(winding)) < 0.05) and winding.min() > -0.05, name
    assert 0.002 < (winding > 0.5).mean() < 0.9, name
    if name in ("teddy", "chair"):  # taller than wide: they stand along y
        extent = mesh.bounds[1] - mesh.bounds[0]
        assert extent[1] > extent[0], (name, extent)


@pytest.mark.parametrize("name", ["cone", "pyramid"])
def test_apexes_point_up_after_placement(name: str) -> None:
    placed = place_guide_mesh(load_guide_shape(name).vertices)
    tip = placed[np.argmax(placed[:, 2])]
    assert np.hypot(tip[0], tip[1]) < 1e-6  # the apex is on the z axis, at the top


def test_a_mesh_file_loads(tmp_path) -> None:
    path = tmp_path / "box.ply"
    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).export(path)
    mesh = load_guide_shape(str(path))
    assert mesh.is_watertight and len(mesh.faces) == 12


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.obj", "no such file"),
        (
            lambda d: (
                (d / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n") and d / "points.obj"
            ),
            "no triangle",
        ),
        (lambda d: (d / "noise.glb").write_bytes(b"\x00\x01garbage") and d / "noise.glb", "read"),
    ],
)
def test_bad_guide_files_are_one_paragraph_naming_the_key(tmp_path, make, expected) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_guide_shape(str(path))
    message = str(error.value)
    assert "system.guide_shape" in message and expected in message and "teddy" in message
    assert "\n" not in message


def test_an_open_mesh_is_accepted_with_the_fraction_of_unclear_winding_numbers(tmp_path) -> None:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-2], process=False)  # one face missing
    path = tmp_path / "open.obj"
    open_box.export(path)
    with pytest.warns(UserWarning, match=r"not watertight: \d+\.\d% of probe points"):
        mesh = load_guide_shape(str(path))
    assert not mesh.is_watertight


def test_the_cylinder_stands_along_y() -> None:
    vertices = load_guide_shape("cylinder").vertices
    assert np.hypot(vertices[:, 0], vertices[:, 2]).max() == pytest.approx(0.5)
    assert np.ptp(vertices[:, 1]) == pytest.approx(1.0)
