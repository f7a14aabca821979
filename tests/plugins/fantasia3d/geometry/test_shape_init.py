"""The targets of ``initialize_shape``: analytic shapes, mesh orientation, loading, distances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import trimesh

from studio.errors import ConfigError
from studio_fantasia3d.geometry.implicit_sdf import ImplicitSDF
from studio_fantasia3d.geometry.shape_init import (
    AXES,
    MeshSDF,
    ellipsoid_sdf,
    load_mesh,
    normalise_vertices,
    orientation,
    sdf_bias,
    sphere_sdf,
    target_sdf,
)
from tests.plugins.fantasia3d.geometry.surfaces import box_points, sphere_points

RADII = [0.3, 0.3, 0.8]


def test_sphere_sdf_is_the_distance():
    points = box_points(1000)
    assert torch.allclose(sphere_sdf(points, 0.5)[:, 0], points.norm(dim=-1) - 0.5)


def test_ellipsoid_sdf_is_zero_on_the_surface_and_never_exceeds_the_distance():
    directions = sphere_points(2000, 1.0)
    surface = directions * torch.tensor(RADII)
    assert ellipsoid_sdf(surface, RADII).abs().max() < 1e-6
    # 1-Lipschitz: its gradient has norm <= 1 everywhere (so |value| <= distance to the surface)
    points = box_points(5000).requires_grad_(True)
    (gradient,) = torch.autograd.grad(ellipsoid_sdf(points, RADII).sum(), points)
    assert gradient.norm(dim=-1).max() <= 1.0 + 1e-5
    # along the long axis: (1 / 0.8 - 1) * 0.3 = 0.075 <= the true distance 0.2
    assert ellipsoid_sdf(torch.tensor([[0.0, 0.0, 1.0]]), RADII).item() == pytest.approx(0.075)
    # negative inside, equal radii give the sphere's SDF
    assert ellipsoid_sdf(torch.zeros(1, 3), RADII).item() == pytest.approx(-0.3)
    assert torch.allclose(ellipsoid_sdf(points, [0.5] * 3), sphere_sdf(points, 0.5), atol=1e-6)


def test_sdf_bias_is_a_constant_or_a_shape():
    points = box_points(100)
    assert torch.equal(sdf_bias(points, 0.25, None), torch.full((100, 1), 0.25))
    assert torch.allclose(sdf_bias(points, "sphere", 0.4), sphere_sdf(points, 0.4))
    assert torch.allclose(sdf_bias(points, "ellipsoid", RADII), ellipsoid_sdf(points, RADII))


def test_orientation_turns_up_to_z_and_front_to_x():
    for up, front in itertools.product(AXES, AXES):
        if up[1] == front[1]:
            with pytest.raises(ValueError, match="orthogonal"):
                orientation(up, front)
            continue
        rotation = orientation(up, front)
        assert np.allclose(rotation @ np.asarray(AXES[up]), [0, 0, 1])
        assert np.allclose(rotation @ np.asarray(AXES[front]), [1, 0, 0])
        assert np.isclose(np.linalg.det(rotation), 1.0)  # a rotation, never a mirror
    # the reference config's human.obj: up +y, front +z -> (x, y, z) becomes (z, x, y)
    assert np.array_equal(orientation("+y", "+z") @ np.array([1.0, 2.0, 3.0]), [3.0, 1.0, 2.0])


def test_normalise_vertices_centres_rotates_and_scales():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(50, 3)) * [0.2, 1.0, 0.5] + [3.0, -1.0, 2.0]
    out = normalise_vertices(vertices, "+y", "+z", 0.9)
    assert np.allclose(out.mean(axis=0), 0.0, atol=1e-12)
    assert np.isclose(np.abs(out).max(), 0.9)
    centred = vertices - vertices.mean(axis=0)
    assert np.allclose(out, centred[:, [2, 0, 1]] * 0.9 / np.abs(centred).max())


def test_load_mesh_concatenates_scene_geometries(tmp_path):
    a = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    b = trimesh.creation.icosphere(subdivisions=1, radius=0.1).apply_translation((0.5, 0, 0))
    path = tmp_path / "two.glb"
    trimesh.Scene([a, b]).export(path)
    vertices, faces = load_mesh(path, "system.geometry.shape_init")
    assert len(faces) == len(a.faces) + len(b.faces)
    assert vertices.dtype == np.float64 and faces.dtype == np.int64
    assert vertices[:, 0].max() > 0.55  # the sphere is there, placed


def test_load_mesh_refuses_missing_unreadable_and_empty_files(tmp_path):
    key = "system.geometry.shape_init"
    with pytest.raises(ConfigError, match=r"shape_init: the mesh file .* does not exist"):
        load_mesh(tmp_path / "nope.obj", key)
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"\x00\x01 not a mesh")
    with pytest.raises(ConfigError, match=r"shape_init.*mesh:PATH"):
        load_mesh(garbage, key)
    empty = tmp_path / "empty.obj"
    empty.write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(ConfigError, match=r"shape_init.*mesh:PATH"):
        load_mesh(empty, key)


def test_mesh_sdf_is_negative_inside_and_the_distance():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    distance = MeshSDF(sphere.vertices, sphere.faces)
    points = box_points(2000)
    values = distance(points)
    assert values.shape == (2000, 1) and values.dtype == torch.float32
    assert (values[:, 0] - sphere_sdf(points, 0.5)[:, 0]).abs().max() < 2e-3  # facets
    assert distance(torch.zeros(1, 3)).item() == pytest.approx(-0.5, abs=2e-3)


def test_mesh_sdf_signs_a_mesh_with_a_hole_by_winding_numbers():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    open_faces = sphere.faces[1:]  # one triangle missing
    distance = MeshSDF(sphere.vertices, open_faces)
    inside = sphere_points(500, 0.3)
    outside = sphere_points(500, 0.7)
    assert (distance(inside) < 0).all() and (distance(outside) > 0).all()


def test_mesh_target_is_oriented_and_scaled(tmp_path):
    capsule = trimesh.creation.capsule(height=0.6, radius=0.2)  # along z
    capsule.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    assert np.argmax(capsule.extents) == 1  # now along +y
    path = tmp_path / "capsule.obj"
    capsule.export(path)
    geometry = ImplicitSDF(
        {
            "shape_init": f"mesh:{path}",
            "shape_init_params": 0.8,
            "shape_init_mesh_up": "+y",
            "shape_init_mesh_front": "+z",
            "pos_encoding_config": {"otype": "HashGrid", "n_levels": 2, "log2_hashmap_size": 10},
        }
    )
    target = target_sdf(geometry.cfg, "system.geometry")
    # the tip along +z at the scale: |z| = 0.8 on the surface, the short axes 0.8 * 0.2 / 0.5
    tips = torch.tensor([[0.0, 0.0, 0.8], [0.0, 0.0, -0.8], [0.32, 0.0, 0.0], [0.0, 0.32, 0.0]])
    assert target(tips).abs().max() < 5e-3
    assert target(torch.tensor([[0.0, 0.0, 0.7]])).item() < 0  # inside along z
    assert target(torch.tensor([[0.0, 0.7, 0.0]])).item() > 0  # outside along y
