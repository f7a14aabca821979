"""The PyTorch backend's analytic antialiasing: hand-computed blends, gradients, silhouette rules."""

from __future__ import annotations

import pytest
import torch

from studio.errors import StudioError
from studio.rasterize import make_rasterizer, triangle_ids
from studio.rasterize.antialias import antialias, edge_topology
from studio.rasterize.torch_backend import TorchRasterizer
from tests.core.rasterize.reference import make_cameras, to_clip
from tests.core.rasterize.test_torch_backend import CAMERAS, icosphere, overlapping_triangles

SIZE = 8


def ndc(pixels: float, size: int = SIZE) -> float:
    """NDC of a position in pixel units (pixel j covers [j, j + 1], its centre is j + 0.5)."""
    return 2.0 * pixels / size - 1.0


def clip_from_pixels(corners: list[tuple[float, float]], w: list[float] | None = None):
    """float64 clip positions ``[V, 4]`` of screen points given in pixel units (``z = 0``)."""
    w = w or [1.0] * len(corners)
    return torch.tensor(
        [[ndc(x) * wi, ndc(y) * wi, 0.0, wi] for (x, y), wi in zip(corners, w, strict=True)],
        dtype=torch.float64,
    )


#: One triangle: a vertical right edge at x = 4.2 (rows 0-6), a steep left edge from (0.2, 0.1) to
#: (4.2, 7.9) and a horizontal bottom edge at y = 0.1 (row 0 is at the image border).
TRIANGLE = [(0.2, 0.1), (4.2, 0.1), (4.2, 7.9)]
FACES = torch.tensor([[0, 1, 2]])


def left_edge(y: float) -> float:
    return 0.2 + 4.0 * (y - 0.1) / 7.8


def row_coverage() -> torch.Tensor:
    """The hand computation: in each row i whose centre line y = i + 0.5 crosses the triangle,
    pixel j is covered by the length of [j, j + 1] inside [left_edge(y), 4.2] along the row."""
    expected = torch.zeros(SIZE, SIZE, dtype=torch.float64)
    for i in range(7):
        lo, hi = left_edge(i + 0.5), 4.2
        for j in range(SIZE):
            expected[i, j] = max(0.0, min(j + 1.0, hi) - max(float(j), lo))
    # row 0's first covered pixel has no left neighbour, so nothing blends it (image border)
    expected[0, 0] = 1.0
    return expected


def render_mask(clip: torch.Tensor, faces: torch.Tensor = FACES, size: int = SIZE) -> torch.Tensor:
    rasterizer = TorchRasterizer()
    rast = rasterizer.rasterize(clip, faces, (size, size))
    mask = (rast[..., 3:] > 0).to(clip.dtype)
    return rasterizer.antialias(mask, rast, clip, faces)


def test_blends_match_the_hand_computed_row_coverage() -> None:
    out = render_mask(clip_from_pixels(TRIANGLE))[0, ..., 0]
    expected = row_coverage()
    assert torch.allclose(out, expected, atol=1e-12), (out - expected).abs().max()
    # e.g. the right edge covers 0.2 of column 4, the left edge 0.0821 of pixel (1, 0)
    assert abs(out[3, 4].item() - 0.2) < 1e-12
    assert abs(out[1, 0].item() - (1.0 - left_edge(1.5))) < 1e-12


def test_colours_blend_towards_the_occluder_and_back() -> None:
    """``out[O] = c[O] + (t - 0.5) (c[F] - c[O])`` beyond the border between the two pixels,
    ``out[F] = c[F] + (0.5 - t) (c[O] - c[F])`` when the edge is inside the front pixel."""
    rasterizer = TorchRasterizer()
    color = torch.rand(
        1, SIZE, SIZE, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    # right edge at 4.2: beyond the border of pixels 3 | 4 by 0.2, pixel 4 takes 0.2 of pixel 3
    clip = clip_from_pixels(TRIANGLE)
    out = rasterizer.antialias(color, rasterizer.rasterize(clip, FACES, (SIZE, SIZE)), clip, FACES)
    assert torch.allclose(out[0, 3, 4], color[0, 3, 4] + 0.2 * (color[0, 3, 3] - color[0, 3, 4]))
    assert torch.equal(out[0, 3, 3], color[0, 3, 3])
    # right edge at 3.8: pixel 3 is covered at its centre but 0.2 of it shows pixel 4's colour
    clip = clip_from_pixels([(0.2, 0.1), (3.8, 0.1), (3.8, 7.9)])
    out = rasterizer.antialias(color, rasterizer.rasterize(clip, FACES, (SIZE, SIZE)), clip, FACES)
    assert torch.allclose(out[0, 3, 3], color[0, 3, 3] + 0.2 * (color[0, 3, 4] - color[0, 3, 3]))
    assert torch.equal(out[0, 3, 4], color[0, 3, 4])


def test_perspective_and_transposed_configurations() -> None:
    """The result depends on screen positions only (any w > 0), and a flat edge is antialiased
    by vertical pixel pairs exactly as a steep one by horizontal pairs."""
    expected = row_coverage()
    scaled = render_mask(clip_from_pixels(TRIANGLE, w=[0.5, 2.0, 1.3]))[0, ..., 0]
    assert torch.allclose(scaled, expected, atol=1e-12)
    transposed = render_mask(clip_from_pixels([(y, x) for x, y in TRIANGLE]))[0, ..., 0]
    assert torch.allclose(transposed, expected.T, atol=1e-12)


def test_position_gradients_have_the_right_sign_and_match_finite_differences() -> None:
    clip = clip_from_pixels(TRIANGLE)

    def coverage(pos: torch.Tensor) -> torch.Tensor:
        return render_mask(pos)

    assert torch.autograd.gradcheck(coverage, (clip.clone().requires_grad_(),))
    pos = clip.clone().requires_grad_()
    coverage(pos).sum().backward()
    # moving the bottom-right vertex right grows the covered area; moving the first vertex right
    # shrinks it: d area / d x = rows blended by the moved edge, weighted by the lever along it
    pixels_per_ndc = SIZE / 2

    # (the left edge blends rows 1-6 only: row 0's pixel has no left neighbour)
    def along(i: int) -> float:  # where row i's centre line meets the edges, from y = 0.1 to 7.9
        return (i + 0.5 - 0.1) / 7.8

    lever_1 = sum(1.0 - along(i) for i in range(7))
    lever_0 = sum(1.0 - along(i) for i in range(1, 7))
    lever_2 = sum(along(i) for i in range(7)) - sum(along(i) for i in range(1, 7))
    assert pos.grad[1, 0].item() == pytest.approx(pixels_per_ndc * lever_1)
    assert pos.grad[0, 0].item() == pytest.approx(-pixels_per_ndc * lever_0)
    assert pos.grad[2, 0].item() == pytest.approx(pixels_per_ndc * lever_2)


def sphere_scene(size: int = 48):
    vertices, faces = icosphere(2)
    clip = to_clip(vertices, make_cameras(CAMERAS[:2]).float())
    rasterizer = TorchRasterizer()
    rast = rasterizer.rasterize(clip, faces, (size, size))
    return rasterizer, clip, faces, rast


def near(boundary: torch.Tensor) -> torch.Tensor:
    """Pixels of ``[B, H, W]`` on either side of a horizontal or vertical change of ``boundary``."""
    out = torch.zeros_like(boundary, dtype=torch.bool)
    step = boundary[:, 1:] != boundary[:, :-1]
    out[:, 1:] |= step
    out[:, :-1] |= step
    step = boundary[:, :, 1:] != boundary[:, :, :-1]
    out[:, :, 1:] |= step
    out[:, :, :-1] |= step
    return out


def test_identity_away_from_silhouettes() -> None:
    """Only pixels next to the silhouette change (a closed sphere has no interior silhouettes);
    with two overlapping triangles, only pixels next to a change of triangle."""
    rasterizer, clip, faces, rast = sphere_scene()
    color = torch.rand(*rast.shape[:3], 3, generator=torch.Generator().manual_seed(1))
    out = rasterizer.antialias(color, rast, clip, faces)
    changed = (out != color).any(-1)
    covered = rast[..., 3] > 0
    assert changed.sum() > 30
    assert not (changed & ~near(covered)).any()
    assert torch.equal(out[~changed], color[~changed])

    vertices, faces = overlapping_triangles()
    clip = to_clip(vertices, make_cameras(CAMERAS[:2]).float())
    rast = rasterizer.rasterize(clip, faces, (40, 40))
    ids = triangle_ids(rast)
    color = torch.rand(2, 40, 40, 3, generator=torch.Generator().manual_seed(2))
    changed = (rasterizer.antialias(color, rast, clip, faces) != color).any(-1)
    inner = near(ids) & (ids >= 0) & ~near(ids >= 0)  # next to the nearer triangle's edge
    assert changed.sum() > 20 and (changed & inner).any()
    assert not (changed & ~near(ids)).any()


def test_shared_edges_folds_and_triangle_soups() -> None:
    """Silhouettes follow the vertex indices: a shared edge between two triangles on either side
    of it is not one; the same edge with the neighbour folded behind it is; so is the edge between
    two triangles of a soup (no shared indices), even when they are coplanar."""
    quad = clip_from_pixels([(1.3, 1.2), (6.6, 1.4), (6.7, 6.8), (1.4, 6.6)])
    shared = torch.tensor([[0, 1, 2], [0, 2, 3]])
    soup_clip = quad[[0, 1, 2, 0, 2, 3]]
    soup = torch.tensor([[0, 1, 2], [3, 4, 5]])
    colors = {}
    for name, clip, faces in (("shared", quad, shared), ("soup", soup_clip, soup)):
        rasterizer = TorchRasterizer()
        rast = rasterizer.rasterize(clip, faces, (SIZE, SIZE))
        face_color = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
        ids = triangle_ids(rast)
        color = torch.where(ids[..., None] >= 0, face_color[ids.clamp(min=0)], 0.0)
        out = rasterizer.antialias(color, rast, clip, faces)
        interior = near(ids) & ~near(ids >= 0)  # along the diagonal, away from the background
        colors[name] = (out != color)[..., 0] & interior
    assert not colors["shared"].any()
    assert colors["soup"].any()

    # fold: the second triangle shares the edge (1, 2) but lies on the first one's side, behind it
    first = [(1.2, 1.3), (5.3, 1.2), (5.2, 6.7)]
    for third, folded in (((7.6, 3.1), False), ((0.4, 6.6), True)):
        clip = clip_from_pixels([*first, third])
        clip[3, 2] = 0.5  # behind the first triangle (z = 0)
        faces = torch.tensor([[0, 1, 2], [2, 1, 3]])  # consistently wound
        rasterizer = TorchRasterizer()
        rast = rasterizer.rasterize(clip, faces, (SIZE, SIZE))
        ids = triangle_ids(rast)
        color = (ids == 0).to(torch.float64)[..., None]
        out = rasterizer.antialias(color, rast, clip, faces)
        # row 4: the shared edge passes x = 5.24, between pixel 4 (first triangle) and pixel 5
        assert ids[0, 4, 4] == 0 and ids[0, 4, 5] == (-1 if folded else 1)
        assert out[0, 4, 5, 0].item() == pytest.approx(0.24 if folded else 0.0, abs=1e-9)
        assert out[0, 4, 4, 0] == 1.0


def test_chunking_and_batching_do_not_change_the_result() -> None:
    _, clip, faces, rast = sphere_scene()
    color = torch.rand(*rast.shape[:3], 3, generator=torch.Generator().manual_seed(3))
    results = []
    for rasterizer in (TorchRasterizer(), TorchRasterizer(max_pairs=7)):
        pos, col = clip.clone().requires_grad_(), color.clone().requires_grad_()
        out = rasterizer.antialias(col, rast, pos, faces)
        (out * color.flip(-1)).sum().backward()
        results.append((out.detach(), pos.grad, col.grad))
    (out_a, pos_a, col_a), (out_b, pos_b, col_b) = results
    assert torch.equal(out_a, out_b)
    assert torch.allclose(pos_a, pos_b, atol=1e-6) and pos_a.abs().sum() > 0
    assert torch.allclose(col_a, col_b)
    # one image at a time gives the same images
    for b in range(2):
        single = antialias(color[b : b + 1], rast[b : b + 1], clip[b : b + 1], faces)
        assert torch.allclose(single, out_a[b : b + 1])


def test_topology_lists_every_neighbour() -> None:
    faces = torch.tensor([[0, 1, 2], [2, 1, 3], [1, 2, 4], [4, 5, 6]])  # edge (1, 2) has three
    topology = edge_topology(faces)
    pairs = list(zip(topology.half_edge.tolist(), topology.partner.tolist(), strict=True))
    # edge (1, 2) is opposite vertex 0 of face 0, vertex 3 of face 1, vertex 4 of face 2
    expected = {(0, 5), (0, 8), (5, 0), (5, 8), (8, 0), (8, 5)}
    assert set(pairs) == expected and len(pairs) == len(expected)
    same = dict(zip(pairs, topology.same_direction.tolist(), strict=True))
    assert not same[(0, 5)] and same[(0, 8)]  # face 1 runs 2 -> 1, face 2 runs 1 -> 2


def test_errors_and_trivial_inputs() -> None:
    rasterizer = make_rasterizer("torch", "cpu")
    clip = clip_from_pixels(TRIANGLE).float()
    rast = rasterizer.rasterize(clip, FACES, (SIZE, SIZE))
    with pytest.raises(StudioError, match="differ in batch or resolution"):
        rasterizer.antialias(torch.zeros(1, SIZE, SIZE + 1, 3), rast, clip, FACES)
    with pytest.raises(StudioError, match="NHWC"):
        rasterizer.antialias(torch.zeros(SIZE, SIZE, 3), rast, clip, FACES)
    with pytest.raises(StudioError, match="2 images for a raster of 1"):
        rasterizer.antialias(torch.zeros(2, SIZE, SIZE, 3), rast, clip, FACES)
    empty = torch.zeros(1, SIZE, SIZE, 4)
    color = torch.rand(1, SIZE, SIZE, 2)
    assert rasterizer.antialias(color, empty, clip, FACES) is color
