"""The primitives data generator: reproducibility, coverage, captions, colours, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from studio.data import cameras as cam
from studio.errors import ConfigError
from studio_primitives.colors import COLORS
from studio_primitives.data import (
    PAIRS,
    AlbedoJitter,
    generate,
    render_sample,
    render_with_mask,
    view_caption,
)
from studio_primitives.shapes import SHAPES
from studio_primitives.training.dataset import main, read_dataset, write_dataset

CHROMATIC = ("red", "green", "blue", "yellow", "orange", "purple")


def expected_view(elevation: float, azimuth: float) -> str:
    """The DreamFusion view of a camera, read independently of the generator's code."""
    a = (azimuth + 180.0) % 360.0 - 180.0
    if elevation > 60.0:
        return "overhead"
    if abs(a) > 135.0:
        return "back"
    if abs(a) < 45.0:
        return "front"
    return "side"


def front_camera(distance: float = 1.8, elevation_deg: float = 15.0) -> dict:
    """A camera (and light) looking at the origin from +x, slightly above."""
    elevation = torch.tensor([elevation_deg]) * cam.DEG
    position = cam.spherical_to_position(elevation, torch.zeros(1), torch.tensor([distance]))
    c2w = cam.look_at(position, torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
    proj = cam.projection_matrix(torch.tensor([50.0]) * cam.DEG, 1.0)
    return {"mvp_mtx": cam.mvp_matrix(c2w, proj), "light_positions": position}


def test_same_seed_same_bytes_other_seed_differs():
    first = [s.image.tobytes() for s in generate(4, seed=3, size=32)]
    again = [s.image.tobytes() for s in generate(4, seed=3, size=32)]
    other = [s.image.tobytes() for s in generate(4, seed=4, size=32)]
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_generation_leaves_the_global_rng_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    list(generate(2, seed=0, size=16))
    assert torch.equal(torch.rand(3), expected)


def test_48_samples_cover_every_pair_with_consistent_metadata():
    samples = list(generate(48, seed=0, size=24))
    assert len(PAIRS) == 48 == len(SHAPES) * len(COLORS)
    assert {(s.shape, s.color) for s in samples} == set(PAIRS)
    for s in samples:
        assert s.image.shape == (24, 24, 3) and s.image.dtype == np.uint8
        assert -10.0 <= s.elevation <= 45.0
        assert s.view == expected_view(s.elevation, s.azimuth)
        assert s.caption == f"a {s.color} {s.shape}, {s.view} view"
        # background pixels are exactly the recorded background, far enough from the albedo
        background = np.round(np.array(s.background) * 255).astype(np.uint8)
        assert (s.image[~s.mask] == background).all()
        assert np.linalg.norm(np.array(s.background) - np.array(COLORS[s.color])) >= 0.3
    assert sum(s.mask.any() for s in samples) == 48  # the object is in every image


@pytest.mark.parametrize(
    ("elevation", "azimuth", "view"),
    [
        (10.0, 0.0, "front"),
        (10.0, 44.0, "front"),
        (10.0, 45.0, "side"),  # thresholds are strict
        (10.0, -90.0, "side"),
        (10.0, 180.0, "back"),
        (10.0, -170.0, "back"),
        (10.0, 350.0, "front"),
        (60.0, 0.0, "front"),
        (70.0, 180.0, "overhead"),
    ],
)
def test_caption_view_suffix(elevation, azimuth, view):
    assert expected_view(elevation, azimuth) == view
    assert view_caption("cube", "red", elevation, azimuth) == (view, f"a red cube, {view} view")


@pytest.mark.parametrize("color", CHROMATIC)
def test_object_pixels_have_the_named_colour(color):
    background = torch.tensor([0.5, 0.5, 0.5])
    image, mask = render_with_mask("sphere", color, front_camera(), background, 48)
    assert 0.1 < mask.mean() < 0.9
    mean = image[mask].astype(np.float64).mean(axis=0)
    target = np.array(COLORS[color])
    np.testing.assert_allclose(mean / mean.max(), target / target.max(), atol=0.05)


def test_white_is_brighter_than_black_and_views_are_centred():
    background = torch.tensor([0.2, 0.6, 0.9])
    white, mask = render_with_mask("cube", "white", front_camera(), background, 48)
    black = render_sample("cube", "black", front_camera(), background, 48)
    assert white[mask].mean() > black[mask].mean() + 100
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - 23.5) < 4 and abs(cols.mean() - 23.5) < 2
    # everything outside the object is the background
    assert (white[~mask] == np.round(background.numpy() * 255).astype(np.uint8)).all()


def test_albedo_jitter_varies_object_colours_within_their_range():
    plain = list(generate(96, 5, 32))
    jittered = list(generate(96, 5, 32, AlbedoJitter(scale=0.2, lift=0.1)))
    assert [s.caption for s in plain] == [s.caption for s in jittered]  # same cameras and views
    black_means = []
    for a, b in zip(plain, jittered, strict=True):
        assert not np.array_equal(a.image[a.mask], b.image[b.mask]) or not a.mask.any()
        if b.color == "black" and b.mask.any():
            black_means.append(b.image[b.mask].astype(np.float64).mean())
        if b.color == "red" and b.mask.any():
            r, g, _ = b.image[b.mask].astype(np.float64).mean(axis=0)
            assert r > 2.5 * g  # still red
    # black albedo 0.04 * U(0.8, 1.2) + U(0, 0.1): pixels below (0.048 + 0.1) * 255 ~ 38
    assert len(black_means) == 12 and max(black_means) < 38.0 and np.ptp(black_means) > 5.0
    with pytest.raises(ConfigError, match=r"scale=1\.5"):
        AlbedoJitter(scale=1.5)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ConfigError, match="Known shapes: cube, sphere"):
        render_sample("hexagon", "red", front_camera(), torch.zeros(3), 16)
    with pytest.raises(ConfigError, match="Known colours: red, green"):
        view_caption("cube", "teal", 0.0, 0.0)


def test_write_dataset_writes_pngs_and_captions(tmp_path):
    folder = write_dataset(tmp_path / "data", n=5, seed=2, size=32)
    pngs = sorted(folder.glob("*.png"))
    lines = (folder / "captions.jsonl").read_text().splitlines()
    assert len(pngs) == 5 and len(lines) == 5
    records = [json.loads(line) for line in lines]
    for sample, record, png in zip(generate(5, seed=2, size=32), records, pngs, strict=True):
        assert record["file"] == png.name
        assert record["caption"] == sample.caption and record["background"] == list(
            sample.background
        )
        assert np.array_equal(np.array(Image.open(png)), sample.image)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging folder left behind
    with pytest.raises(ConfigError, match="already exists"):
        write_dataset(folder, n=1, seed=0, size=16)


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "cli"), "--n", "3", "--seed", "1", "--size", "16"]) == 0
    assert "wrote 3 images" in capsys.readouterr().out
    assert len(list((tmp_path / "cli").glob("*.png"))) == 3


def test_read_dataset_returns_what_write_dataset_wrote(tmp_path):
    folder = write_dataset(tmp_path / "data", n=4, seed=3, size=16)
    images, captions = read_dataset(folder)
    expected = list(generate(4, seed=3, size=16))
    assert images.dtype == np.uint8 and images.shape == (4, 16, 16, 3)
    assert np.array_equal(images, np.stack([s.image for s in expected]))
    assert captions == [s.caption for s in expected]


def test_read_dataset_rejects_a_folder_without_captions(tmp_path):
    with pytest.raises(ConfigError, match=r"no captions\.jsonl"):
        read_dataset(tmp_path)
