"""Sketch-Shape's guide-shape loss against a float64 brute force on a small mesh, and its grid
lookup against the exact fields."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from studio_latentnerf.shape_loss import (
    GuideFields,
    inside_and_squared_distance,
    place_guide_mesh,
    shape_loss,
)


def solid_angle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Signed solid angle of triangle abc seen from p (Van Oosterom & Strackee)."""
    x, y, z = a - p, b - p, c - p
    lx, ly, lz = np.linalg.norm(x), np.linalg.norm(y), np.linalg.norm(z)
    numerator = np.dot(x, np.cross(y, z))
    denominator = lx * ly * lz + np.dot(x, y) * lz + np.dot(y, z) * lx + np.dot(z, x) * ly
    return 2.0 * math.atan2(numerator, denominator)


def point_triangle_squared_distance(p: np.ndarray, tri: np.ndarray) -> float:
    """Brute force: the nearest of the projection (when inside the triangle) and the three
    edges' nearest points."""
    a, b, c = tri
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal)
    projected = p - np.dot(p - a, normal) * normal
    candidates = []
    inside = all(
        np.dot(np.cross(v1 - v0, projected - v0), normal) >= 0
        for v0, v1 in ((a, b), (b, c), (c, a))
    )
    if inside:
        candidates.append(projected)
    for v0, v1 in ((a, b), (b, c), (c, a)):
        t = np.clip(np.dot(p - v0, v1 - v0) / np.dot(v1 - v0, v1 - v0), 0.0, 1.0)
        candidates.append(v0 + t * (v1 - v0))
    return min(float(np.sum((p - q) ** 2)) for q in candidates)


def brute_force(vertices, faces, points) -> tuple[np.ndarray, np.ndarray]:
    winding = np.array(
        [sum(solid_angle(p, *vertices[f]) for f in faces) / (4 * math.pi) for p in points]
    )
    squared = np.array(
        [min(point_triangle_squared_distance(p, vertices[f]) for f in faces) for p in points]
    )
    return winding, squared


@pytest.fixture(scope="module")
def guide() -> tuple[np.ndarray, np.ndarray]:
    """A box 1.2 x 1 x 0.8 (y-up), placed as the reference places a guide."""
    box = trimesh.creation.box(extents=(1.2, 1.0, 0.8))
    return place_guide_mesh(box.vertices), np.asarray(box.faces)


def test_placement_centres_scales_and_turns_y_up_to_z_up() -> None:
    vertices = np.array([[0.0, 3.0, 0.0], [0.0, 1.0, 0.0], [1.0, 2.0, 0.0], [-1.0, 2.0, 0.0]])
    placed = place_guide_mesh(vertices)
    np.testing.assert_allclose(placed.mean(axis=0), 0.0, atol=1e-12)
    assert np.linalg.norm(placed, axis=1).max() == pytest.approx(0.7)
    np.testing.assert_allclose(placed[0], [0.0, 0.0, 0.7], atol=1e-12)  # y-up -> z-up


def test_libigl_fields_match_the_brute_force(guide) -> None:
    vertices, faces = guide
    points = np.random.default_rng(0).uniform(-0.7, 0.7, (300, 3))
    inside, squared = inside_and_squared_distance(vertices, faces, points)
    winding, expected_squared = brute_force(vertices, faces, points)
    np.testing.assert_array_equal(inside, (winding > 0.5).astype(float))
    assert 20 < inside.sum() < 280  # both sides are exercised
    np.testing.assert_allclose(squared, expected_squared, rtol=1e-9, atol=1e-12)


def test_shape_loss_matches_a_float64_hand_computation(guide) -> None:
    vertices, faces = guide
    rng = np.random.default_rng(1)
    points = rng.uniform(-1.0, 1.0, (200, 3))
    density = torch.tensor(rng.uniform(0.0, 30.0, 200))
    winding, squared = brute_force(vertices, faces, points)
    expected = 0.0
    for sigma, wn, d2 in zip(density.tolist(), winding, squared, strict=True):
        p = min(max(1 - math.exp(-0.2 * sigma), 0.0), 1.1)
        q = min(max(float(wn > 0.5), 1e-4), 1 - 1e-4)
        w = 1 - math.exp(-d2 / (2 * 0.3**2))
        expected -= w * (p * math.log(q) + (1 - p) * math.log(1 - q))
    inside, squared_igl = inside_and_squared_distance(vertices, faces, points)
    actual = shape_loss(density, torch.tensor(inside), torch.tensor(squared_igl))
    assert actual.item() == pytest.approx(expected, rel=1e-9)


def test_samples_marked_invalid_are_left_out_of_the_shape_loss() -> None:
    density, inside, squared = torch.rand(50) * 20, torch.rand(50), torch.rand(50)
    valid = torch.rand(50) > 0.4
    expected = shape_loss(density[valid], inside[valid], squared[valid])
    assert shape_loss(density, inside, squared, valid).item() == pytest.approx(expected.item())
    assert shape_loss(density, inside, squared).item() > expected.item()  # padding would count


def test_the_grid_lookup_agrees_with_the_exact_loss(guide) -> None:
    """At resolution 128 (a node every 0.016 in the radius-1 box) the loss from the grid is
    within 2% of the exact one over random samples; distances within 0.002 on average (0.02 at
    most, at creases)."""
    vertices, faces = guide
    fields = GuideFields.from_mesh(vertices, faces, radius=1.0, resolution=128)
    rng = np.random.default_rng(2)
    points = rng.uniform(-1.0, 1.0, (2000, 3))
    density = torch.tensor(rng.uniform(0.0, 30.0, 2000), dtype=torch.float32)
    inside, squared = inside_and_squared_distance(vertices, faces, points)
    exact = shape_loss(density.double(), torch.tensor(inside), torch.tensor(squared))
    looked_up = fields.loss(torch.tensor(points, dtype=torch.float32), density)
    print(f"shape loss exact {exact.item():.3f}, from the 128^3 grid {looked_up.item():.3f}")
    assert looked_up.item() == pytest.approx(exact.item(), rel=0.02)
    grid_inside, grid_squared = fields.lookup(torch.tensor(points, dtype=torch.float32))
    distance_error = (grid_squared.double().sqrt() - torch.tensor(squared).sqrt()).abs()
    assert distance_error.max() < 0.02 and distance_error.mean() < 0.002
    far = torch.tensor(squared) > 0.05**2  # away from the surface the indicator is exact
    assert torch.equal(grid_inside.double()[far].round(), torch.tensor(inside)[far])


def test_the_loss_pulls_occupancy_towards_the_guide(guide) -> None:
    vertices, faces = guide
    fields = GuideFields.from_mesh(vertices, faces, radius=1.0, resolution=32)
    inside_point, outside_point = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.9, 0.9]])
    for point, sign in ((inside_point, -1.0), (outside_point, 1.0)):
        density = torch.tensor([5.0], requires_grad=True)
        fields.loss(point, density).backward()
        assert sign * density.grad.item() > 0  # inside: grow density; outside: shrink it
