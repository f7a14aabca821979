"""Sketch-Shape's guide shapes: a mesh file, or a shape built here in code.

``guide_shape`` is a built-in name (:data:`BUILTIN_SHAPES`: the primitives models' six shapes
and two composites, a teddy bear and a chair, assembled from spheres and boxes) or the path of a
mesh file trimesh reads (OBJ, GLB/glTF, PLY, STL, OFF). Built-ins stand along ``+y`` like most
mesh files, since the guide is turned from y-up to z-up when placed
(:func:`studio_latentnerf.shape_loss.place_guide_mesh`).

:func:`load_guide_shape` refuses, in one paragraph naming the key, a file that is missing,
unreadable or holds no triangles; a mesh that is not watertight is accepted with a warning giving
the fraction of probe points whose winding number is not close to 0 or 1 (inside and outside are
ill-defined there).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh
import trimesh.creation

from studio.api import ConfigError

#: Turns a z-up trimesh creation to stand along +y: (x, y, z) -> (x, z, -y).
_Z_UP_TO_Y_UP = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def _standing(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    return mesh.apply_transform(_Z_UP_TO_Y_UP)


def _pyramid() -> trimesh.Trimesh:
    """A square pyramid, base 2 x 2 at z = 0, apex at height 1.5 (z-up)."""
    vertices = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 1.5]], float)
    faces = np.array([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    return trimesh.Trimesh(vertices, faces, process=False)


def _ball(radius: float, centre: tuple[float, float, float]) -> trimesh.Trimesh:
    ball = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    return ball.apply_translation(centre)


def _block(extents: tuple[float, float, float], centre: tuple[float, float, float]):
    return trimesh.creation.box(extents=extents).apply_translation(centre)


def _teddy() -> trimesh.Trimesh:
    """A sitting teddy bear (y-up): body, head, snout, ears, arms and legs, each a sphere."""
    parts = [
        _ball(0.55, (0.0, 0.55, 0.0)),  # body
        _ball(0.38, (0.0, 1.35, 0.0)),  # head
        _ball(0.15, (0.0, 1.28, 0.35)),  # snout
        _ball(0.14, (-0.28, 1.68, 0.0)),  # ears
        _ball(0.14, (0.28, 1.68, 0.0)),
        _ball(0.18, (-0.58, 0.75, 0.15)),  # arms
        _ball(0.18, (0.58, 0.75, 0.15)),
        _ball(0.22, (-0.32, 0.15, 0.45)),  # legs
        _ball(0.22, (0.32, 0.15, 0.45)),
    ]
    return trimesh.util.concatenate(parts)


def _chair() -> trimesh.Trimesh:
    """A chair (y-up): seat, backrest and four legs, each a box."""
    parts = [_block((1.0, 0.1, 1.0), (0.0, 0.9, 0.0)), _block((1.0, 1.0, 0.1), (0.0, 1.45, -0.45))]
    for x in (-0.42, 0.42):
        for z in (-0.42, 0.42):
            parts.append(_block((0.1, 0.85, 0.1), (x, 0.425, z)))
    return trimesh.util.concatenate(parts)


#: name -> builder of a watertight mesh standing along +y.
BUILTIN_SHAPES: dict[str, Callable[[], trimesh.Trimesh]] = {
    "cube": lambda: trimesh.creation.box(extents=(1.0, 1.0, 1.0)),
    "sphere": lambda: trimesh.creation.icosphere(subdivisions=3, radius=1.0),
    "cylinder": lambda: _standing(trimesh.creation.cylinder(radius=0.5, height=1.0, sections=48)),
    "cone": lambda: _standing(trimesh.creation.cone(radius=0.5, height=1.0, sections=48)),
    "torus": lambda: _standing(trimesh.creation.torus(major_radius=1.0, minor_radius=0.4)),
    "pyramid": lambda: _standing(_pyramid()),
    "teddy": _teddy,
    "chair": _chair,
}


def _fix(key: str, value: str) -> str:
    return (
        f"Set {key} to a mesh file trimesh reads (.obj, .glb, .ply, .stl, .off) or a built-in "
        f"shape: {', '.join(BUILTIN_SHAPES)}."
    )


def _read_mesh(path: Path, key: str) -> trimesh.Trimesh:
    try:
        loaded = trimesh.load(path, force="mesh", process=True)
    except Exception as exc:  # noqa: BLE001 - trimesh's loaders raise many kinds of error
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{key}={str(path)!r}: the file could not be read as a mesh ({reason}). "
            f"{_fix(key, str(path))}"
        ) from None
    if not isinstance(loaded, trimesh.Trimesh):
        raise ConfigError(
            f"{key}={str(path)!r}: the file holds no triangle mesh. {_fix(key, str(path))}"
        )
    return loaded


def inconsistent_winding_fraction(mesh: trimesh.Trimesh, probes: int = 16) -> float:
    """Fraction of ``probes^3`` points on a grid over the mesh's bounding box (enlarged by 10%)
    whose winding number is more than 0.1 from both 0 and 1."""
    from studio_latentnerf.shape_loss import winding_numbers

    low, high = mesh.bounds
    pad = 0.1 * (high - low)
    axes = [np.linspace(lo, hi, probes) for lo, hi in zip(low - pad, high + pad, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    winding = winding_numbers(mesh.vertices, mesh.faces, points)
    off = np.minimum(np.abs(winding), np.abs(winding - 1.0)) > 0.1
    return float(off.mean())


def load_guide_shape(value: str, key: str = "system.guide_shape") -> trimesh.Trimesh:
    """The guide mesh named by ``value`` (see the module doc); :class:`ConfigError` for a file
    that is missing, unreadable or empty; a warning for a mesh that is not watertight."""
    if value in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[value]()
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{key}={value!r}: no such file, and not a built-in shape. {_fix(key, value)}"
        )
    mesh = _read_mesh(path, key)
    if len(mesh.faces) == 0:
        raise ConfigError(f"{key}={value!r}: the mesh has no triangles. {_fix(key, value)}")
    if not mesh.is_watertight:
        fraction = inconsistent_winding_fraction(mesh)
        warnings.warn(
            f"{key}={value!r} is not watertight: {fraction:.1%} of probe points have a winding "
            "number far from 0 and 1, where inside and outside are ill-defined; the shape loss "
            "treats winding numbers above 0.5 as inside.",
            stacklevel=2,
        )
    return mesh
