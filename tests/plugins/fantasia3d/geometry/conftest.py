"""Fitted ``implicit-sdf`` geometries shared by the tests of this folder (each fit runs once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from studio_fantasia3d.geometry.implicit_sdf import ImplicitSDF
from tests.plugins.fantasia3d.geometry.surfaces import ELLIPSOID_RADII, SPHERE_RADIUS, fit


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def fitted_sphere() -> ImplicitSDF:
    return fit("sphere", SPHERE_RADIUS)


@pytest.fixture(scope="session")
def fitted_ellipsoid() -> ImplicitSDF:
    return fit("ellipsoid", ELLIPSOID_RADII)
