"""Triangle meshes and isosurface extraction (marching cubes / marching tetrahedra).

Names are imported on first use, so ``import studio.mesh.io`` does not pull in the extraction code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Mesh": "studio.mesh.mesh",
    "IsosurfaceHelper": "studio.mesh.isosurface",
    "MarchingCubesHelper": "studio.mesh.isosurface",
    "MarchingTetrahedraHelper": "studio.mesh.isosurface",
    "extract_isosurface": "studio.mesh.isosurface",
    "mean_field_threshold": "studio.mesh.isosurface",
    "tet_grid": "studio.mesh.tets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'studio.mesh' has no attribute {name!r}")
