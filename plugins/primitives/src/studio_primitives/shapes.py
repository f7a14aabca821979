"""The primitive shapes of the data set, as :class:`studio.mesh.mesh.Mesh` objects.

Every shape is centred at the origin (its bounding-box centre), stands along ``+z`` and is scaled so
its farthest vertex lies :data:`BOUND_RADIUS` from the origin: it fits the presets' cameras
(distance 1.5-2.0, fovy 40-70 degrees). Flat faces get flat normals (vertices are split at sharp
edges), curved surfaces smooth ones, so ``Mesh.v_nrm`` shades each shape as a person expects.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import trimesh
import trimesh.creation

from studio.api import ConfigError, Mesh

SHAPES = ("cube", "sphere", "cylinder", "cone", "torus", "pyramid")

#: Distance from the origin of every shape's farthest vertex.
BOUND_RADIUS = 0.6

#: Edges whose faces meet at more than this angle (degrees) get split vertices (flat shading).
_SHARP_ANGLE_DEG = 30.0


def check_shape(name: str) -> str:
    """``name`` if it is a known shape; else a :class:`ConfigError` listing the known shapes."""
    if name not in SHAPES:
        raise ConfigError(f"Unknown shape {name!r}. Known shapes: {', '.join(SHAPES)}.")
    return name


def _pyramid() -> trimesh.Trimesh:
    """A square pyramid: base ``[-1, 1]^2`` at ``z = 0``, apex at ``(0, 0, 1.5)``."""
    vertices = np.array(
        [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 1.5]], dtype=np.float64
    )
    faces = np.array([[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    return trimesh.Trimesh(vertices, faces, process=False)


def _raw(name: str) -> trimesh.Trimesh:
    if name == "cube":
        return trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    if name == "sphere":
        return trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    if name == "cylinder":
        return trimesh.creation.cylinder(radius=0.5, height=1.0, sections=48)
    if name == "cone":
        return trimesh.creation.cone(radius=0.5, height=1.0, sections=48)
    if name == "torus":
        return trimesh.creation.torus(major_radius=1.0, minor_radius=0.4)
    return _pyramid()


def _split_sharp_edges(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces with one vertex copy per smooth group of faces around each vertex."""
    faces = mesh.faces
    adjacency = mesh.face_adjacency[mesh.face_adjacency_angles < math.radians(_SHARP_ANGLE_DEG)]
    n_faces = len(faces)
    # union-find over (face, corner) slots: corners of smooth neighbours sharing a vertex merge
    parent = np.arange(n_faces * 3)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for fa, fb in adjacency:
        for ca in range(3):
            for cb in range(3):
                if faces[fa, ca] == faces[fb, cb]:
                    ra, rb = find(fa * 3 + ca), find(fb * 3 + cb)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n_faces * 3)])
    unique_roots, new_index = np.unique(roots, return_inverse=True)
    vertices = mesh.vertices[faces.reshape(-1)[unique_roots]]
    return vertices, new_index.reshape(n_faces, 3)


@functools.cache
def _shape_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    mesh = _raw(name)
    vertices, faces = _split_sharp_edges(mesh)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - (lo + hi) / 2
    vertices = vertices * (BOUND_RADIUS / np.linalg.norm(vertices, axis=1).max())
    return vertices.astype(np.float32), faces.astype(np.int64)


def shape_mesh(name: str) -> Mesh:
    """A new :class:`Mesh` of shape ``name`` (one of :data:`SHAPES`) on the CPU.

    Unknown names raise :class:`ConfigError` listing the known shapes.
    """
    vertices, faces = _shape_arrays(check_shape(name))
    return Mesh(torch.from_numpy(vertices.copy()), torch.from_numpy(faces.copy()), shape=name)
