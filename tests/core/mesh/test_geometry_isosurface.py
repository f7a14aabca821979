"""``BaseImplicitGeometry.isosurface`` on dreamfusion's tiny ``implicit-volume``/``volume-grid``."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from studio.errors import ConfigError, StudioError
from studio.mesh.isosurface import get_helper, mean_field_threshold
from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
from studio_dreamfusion.geometry.volume_grid import VolumeGrid

GRID = {
    "otype": "HashGrid",
    "n_levels": 4,
    "n_features_per_level": 2,
    "log2_hashmap_size": 12,
    "base_resolution": 4,
    "per_level_scale": 1.5,
}


def tiny_volume(**overrides) -> ImplicitVolume:
    torch.manual_seed(0)
    cfg = {"radius": 1.0, "isosurface_resolution": 32, "pos_encoding_config": GRID}
    return ImplicitVolume({**cfg, **overrides})


def blob_radius(geometry: ImplicitVolume, threshold: float) -> float:
    """Where the blob bias alone reaches ``threshold``: softplus(10 (1 - r / 0.5)) = threshold."""
    inverse_softplus = threshold + torch.log(-torch.expm1(torch.tensor(-threshold))).item()
    cfg = geometry.cfg
    return cfg.density_blob_std * (1.0 - inverse_softplus / cfg.density_blob_scale)


def test_config_defaults_and_types():
    geometry = tiny_volume()
    assert geometry.cfg.isosurface_threshold == 25.0  # implicit-volume's own default
    assert geometry.cfg.isosurface_method == "mt" and geometry.cfg.isosurface_resolution == 32
    assert VolumeGrid({"grid_size": [4, 4, 4]}).cfg.isosurface_threshold == "auto"
    count = tiny_volume(isosurface_outlier_n_faces_threshold=5).cfg
    fraction = tiny_volume(isosurface_outlier_n_faces_threshold=0.05).cfg
    assert type(count.isosurface_outlier_n_faces_threshold) is int
    assert type(fraction.isosurface_outlier_n_faces_threshold) is float
    with pytest.raises(ConfigError, match="isosurface_threshold"):
        tiny_volume(isosurface_threshold="autoo")
    with pytest.raises(ConfigError, match="isosurface_method"):
        tiny_volume(isosurface_method="mc")


def test_default_threshold_on_an_untrained_blob_is_a_clear_error():
    geometry = tiny_volume()  # the blob's density peaks near softplus(10) < 25
    with torch.no_grad(), pytest.raises(StudioError, match=r"threshold 25 is empty.*'auto'"):
        geometry.isosurface()


@pytest.mark.parametrize("method", ["mt", "mc-cpu"])
def test_isosurface_lies_on_the_level_set(method):
    geometry = tiny_volume(isosurface_method=method)
    with torch.no_grad():
        mesh = geometry.isosurface(threshold=5.0)
        density = geometry.forward_density(mesh.v_pos)
    assert mesh.n_faces > 1000
    assert geometry.cfg.isosurface_threshold == 25.0  # the config is untouched
    # the density at the vertices is the threshold, up to interpolation error; the density
    # changes by ~20 per unit length there, so 0.1 is a 0.005 offset (a tenth of a cell)
    assert (density - 5.0).abs().max() < 0.1
    radius = mesh.v_pos.norm(dim=-1)
    assert radius.mean().item() == pytest.approx(blob_radius(geometry, 5.0), abs=0.005)
    # coarse-to-fine: the box hugs the blob (1.2 x its diameter)
    box = mesh.extras["bbox"]
    assert torch.allclose(box[1] - box[0], torch.full((3,), 1.2 * 2 * radius.max()), atol=0.07)
    # outward normals on the (roughly spherical) blob
    assert (mesh.v_nrm * F.normalize(mesh.v_pos, dim=-1)).sum(-1).min() > 0.5


def test_isosurface_is_differentiable_with_marching_tetrahedra():
    geometry = tiny_volume(isosurface_coarse_to_fine=False, isosurface_resolution=16)
    mesh = geometry.isosurface(threshold=5.0)
    assert mesh.requires_grad
    mesh.v_pos.sum().backward()
    grads = [p.grad for p in geometry.density_network.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_auto_threshold_stored_or_fallback(caplog):
    geometry = tiny_volume(isosurface_threshold="auto")
    with torch.no_grad():
        explicit = geometry.isosurface(threshold=5.0)
        geometry.set_isosurface_threshold(5.0)
        with caplog.at_level(logging.INFO):
            stored = geometry.isosurface()
        assert "stored value 5" in caplog.text
        assert torch.equal(stored.v_pos, explicit.v_pos)
        assert geometry.cfg.isosurface_threshold == "auto"
        geometry.set_isosurface_threshold(None)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            fallback = geometry.isosurface()
    used = fallback.extras["threshold"]
    assert f"automatic threshold {used:.6g}" in caplog.text
    box = geometry.bbox  # the fallback is the mean field value (> 1e-5) of the full-box pass
    grid = box[0] + get_helper("mt", 32).grid_vertices * (box[1] - box[0])
    with torch.no_grad():
        assert used == pytest.approx(mean_field_threshold(geometry.forward_field(grid)))
        density = geometry.forward_density(fallback.v_pos)
    assert (density - used).abs().max() < 0.1


def test_volume_grid_auto_threshold():
    geometry = VolumeGrid({"grid_size": [16, 16, 16], "isosurface_resolution": 24})
    with torch.no_grad():
        mesh = geometry.isosurface()
    assert mesh.n_faces > 100
    assert 0.0 < mesh.extras["threshold"] < geometry.forward_density(torch.zeros(1, 3)).item()


def test_disabled_or_undeformable_isosurface():
    with pytest.raises(ConfigError, match="isosurface is false"):
        tiny_volume(isosurface=False).isosurface(threshold=5.0)
    with pytest.raises(ConfigError, match="isosurface_deformable_grid must be false"):
        tiny_volume(isosurface_deformable_grid=True).isosurface(threshold=5.0)
