"""Shapes and colours of the primitives data set: geometry contract and clear errors."""

from __future__ import annotations

import pytest
import torch

from studio.errors import ConfigError
from studio_primitives.colors import COLORS, color_rgb
from studio_primitives.shapes import BOUND_RADIUS, SHAPES, shape_mesh


@pytest.mark.parametrize("name", SHAPES)
def test_shapes_are_centred_closed_and_fit_the_cameras(name):
    mesh = shape_mesh(name)
    v = mesh.v_pos
    lo, hi = v.min(0).values, v.max(0).values
    assert torch.allclose((lo + hi) / 2, torch.zeros(3), atol=1e-5)
    assert v.norm(dim=-1).max().item() == pytest.approx(BOUND_RADIUS, abs=1e-4)
    # outward winding: the signed volume (divergence theorem) is positive
    a, b, c = (v[mesh.t_pos_idx[:, k]] for k in range(3))
    assert (a * torch.cross(b, c, dim=-1)).sum().item() > 0
    assert torch.allclose(mesh.v_nrm.norm(dim=-1), torch.ones(mesh.n_vertices), atol=1e-4)


def test_cube_has_flat_faces():
    normals = shape_mesh("cube").v_nrm
    # every vertex normal is an axis direction (no smoothing across the cube's edges)
    assert torch.allclose(normals.abs().max(dim=-1).values, torch.ones(len(normals)), atol=1e-5)


def test_colors_are_in_range():
    assert set(COLORS) >= {"red", "green", "blue", "yellow", "orange", "purple", "white", "black"}
    for name in COLORS:
        rgb = color_rgb(name)
        assert rgb.shape == (3,) and rgb.min() >= 0 and rgb.max() <= 1


def test_unknown_shape_and_colour_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"Unknown shape 'hexagon'.*cube, sphere, cylinder"):
        shape_mesh("hexagon")
    with pytest.raises(ConfigError, match=r"Unknown colour 'teal'.*red, green, blue"):
        color_rgb("teal")
