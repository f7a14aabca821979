"""studio.io.images: one-channel images through the colour maps."""

from __future__ import annotations

import numpy as np

from studio.io.images import SPECTRAL_ANCHORS, grayscale_to_uint8


def test_spectral_runs_from_red_through_pale_yellow_to_violet():
    ramp = np.linspace(0.0, 1.0, 7)[None, :]
    colours = grayscale_to_uint8(ramp, (0.0, 1.0), "spectral")[0].astype(float) / 255.0
    np.testing.assert_allclose(colours, SPECTRAL_ANCHORS, atol=1 / 255)
    assert colours[0, 0] > colours[0, 2] and colours[-1, 2] > colours[-1, 0]  # red .. violet
    # continuous between anchors: halfway is the mean of its neighbours
    half = grayscale_to_uint8(np.array([[1 / 12]]), (0.0, 1.0), "spectral")[0, 0] / 255.0
    np.testing.assert_allclose(half, SPECTRAL_ANCHORS[:2].mean(0), atol=1 / 255)


def test_values_outside_the_range_are_clamped_and_grey_is_the_default():
    img = np.array([[-1.0, 0.5, 2.0]])
    grey = grayscale_to_uint8(img, (0.0, 1.0))
    assert grey[0, :, 0].tolist() == [0, 128, 255] and (grey == grey[..., :1]).all()
    spectral = grayscale_to_uint8(img, (0.0, 1.0), "spectral")
    assert (spectral[0, 0] == grayscale_to_uint8(np.zeros((1, 1)), (0.0, 1.0), "spectral")).all()
