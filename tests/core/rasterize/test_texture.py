"""``texture()`` of the PyTorch backend: nvdiffrast's conventions, hand-computed samples, gradients."""

from __future__ import annotations

import pytest
import torch

from studio.errors import StudioError
from studio.rasterize import make_rasterizer
from studio.rasterize.texture import sample_texture

#: 2 rows x 4 columns, 2 channels; texel (i, j) = (10 i + j, -(10 i + j))
TEX = torch.tensor(
    [[[10.0 * i + j, -(10.0 * i + j)] for j in range(4)] for i in range(2)], dtype=torch.float64
)[None]


def sample(uv: list[tuple[float, float]], **modes: str) -> torch.Tensor:
    coords = torch.tensor(uv, dtype=torch.float64).reshape(1, 1, -1, 2)
    return sample_texture(TEX, coords, **modes)[0, 0, :, 0]


def test_texel_centres_and_the_first_row() -> None:
    """uv (0, 0) is the corner of row 0; texel (i, j) is sampled exactly at its centre."""
    centres = [((j + 0.5) / 4, (i + 0.5) / 2) for i in range(2) for j in range(4)]
    for mode in ("linear", "nearest"):
        got = sample(centres, filter_mode=mode)
        assert torch.equal(got, torch.tensor([0.0, 1, 2, 3, 10, 11, 12, 13], dtype=torch.float64))


def test_bilinear_matches_a_hand_computation() -> None:
    # u = 0.3: x = 0.3 * 4 - 0.5 = 0.7 -> columns 0, 1 with weights 0.3, 0.7
    # v = 0.6: y = 0.6 * 2 - 0.5 = 0.7 -> rows 0, 1 with weights 0.3, 0.7
    expected = 0.3 * (0.3 * 0 + 0.7 * 1) + 0.7 * (0.3 * 10 + 0.7 * 11)
    assert sample([(0.3, 0.6)]).item() == pytest.approx(expected)
    assert sample([(0.3, 0.6)], boundary_mode="clamp").item() == pytest.approx(expected)


def test_wrap_and_clamp_at_the_borders() -> None:
    # u = 0.05: x = -0.3 -> wrap: column 3 (weight 0.3) and column 0 (0.7); clamp: column 0
    # v = 0.25: y = 0 -> row 0 exactly
    assert sample([(0.05, 0.25)]).item() == pytest.approx(0.3 * 3 + 0.7 * 0)
    assert sample([(0.05, 0.25)], boundary_mode="clamp").item() == pytest.approx(0.0)
    # v = 0.95: y = 1.4 -> wrap: row 1 (0.6) and row 0 (0.4); clamp: row 1
    u = 0.625  # x = 2.0: column 2 exactly
    assert sample([(u, 0.95)]).item() == pytest.approx(0.6 * 12 + 0.4 * 2)
    assert sample([(u, 0.95)], boundary_mode="clamp").item() == pytest.approx(12.0)
    # wrap takes the fractional part: u + 1, u - 2 sample the same point
    assert torch.allclose(sample([(0.3, 0.6), (1.3, -1.4), (-1.7, 2.6)]), sample([(0.3, 0.6)] * 3))
    # nearest: the texel containing uv, wrapped or clamped
    assert sample([(-0.05, 1.2)], filter_mode="nearest").item() == 3.0
    assert sample([(-0.05, 1.2)], filter_mode="nearest", boundary_mode="clamp").item() == 10.0


def test_gradients_match_finite_differences() -> None:
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(2, 5, 6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    # avoid texel centres and borders, where bilinear filtering has kinks
    uv = (torch.rand(2, 3, 4, 2, dtype=torch.float64, generator=g) * 1.6 - 0.3).requires_grad_()
    for boundary_mode in ("wrap", "clamp"):

        def fn(t: torch.Tensor, c: torch.Tensor, mode: str = boundary_mode) -> torch.Tensor:
            return sample_texture(t, c, "linear", mode)

        assert torch.autograd.gradcheck(fn, (tex, uv))
    shared = tex[:1].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: sample_texture(t, uv.detach(), "nearest", "wrap"), (shared,)
    )


def test_backend_method_batches_and_errors() -> None:
    rasterizer = make_rasterizer("torch", "cpu")
    tex = torch.rand(1, 4, 4, 2)
    uv = torch.rand(3, 5, 7, 2)
    out = rasterizer.texture(tex, uv)
    assert out.shape == (3, 5, 7, 2)
    assert torch.allclose(out[2], rasterizer.texture(tex, uv[2:])[0])
    per_image = rasterizer.texture(tex.expand(3, -1, -1, -1), uv)
    assert torch.allclose(per_image, out)
    with pytest.raises(StudioError, match="filter_mode 'linear-mipmap-linear'"):
        rasterizer.texture(tex, uv, filter_mode="linear-mipmap-linear")
    with pytest.raises(StudioError, match="boundary_mode 'cube'"):
        rasterizer.texture(tex, uv, boundary_mode="cube")
    with pytest.raises(StudioError, match="2 textures for 3 uv images"):
        rasterizer.texture(tex.expand(2, -1, -1, -1), uv)
    with pytest.raises(StudioError, match=r"uv \[B, H, W, 2\]"):
        rasterizer.texture(tex, uv[..., :1])
