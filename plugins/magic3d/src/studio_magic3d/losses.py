"""Mesh regularisers of Magic3D's refinement stage (reference §4.1.8, §5.2).

* ``normal_consistency``: the mean over the mesh's unique edges of ``1 - cos(n_a, n_b)`` between
  the vertex normals at the edge's two ends (:meth:`studio.api.Mesh.normal_consistency`).
* ``laplacian_smoothness``: the mean over vertices of ``|L v|``, ``L`` the uniform graph
  Laplacian (degree on the diagonal, -1 per neighbour; :meth:`studio.api.Mesh.laplacian`).

Both reach the DMTet grid's ``sdf`` and ``deformation`` through the extracted vertex positions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from studio.api import Mesh

#: The mesh regularisers, by the name their weight ``system.loss.lambda_<name>`` uses.
MESH_REGULARISERS = ("normal_consistency", "laplacian_smoothness")


def mesh_regularisers(mesh: Mesh, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """The regularisers whose weight is positive, evaluated on ``mesh``."""
    losses: dict[str, torch.Tensor] = {}
    if weights.get("normal_consistency", 0.0) > 0:
        losses["normal_consistency"] = mesh.normal_consistency()
    if weights.get("laplacian_smoothness", 0.0) > 0:
        losses["laplacian_smoothness"] = mesh.laplacian()
    return losses
