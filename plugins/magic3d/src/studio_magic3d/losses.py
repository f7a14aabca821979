"""Mesh regularisers of Magic3D's refinement stage (reference §4.1.8, §5.2).

* ``normal_consistency``: the mean over the mesh's unique edges of ``1 - cos(n_a, n_b)`` between
  the vertex normals at the edge's two ends (:meth:`studio.api.Mesh.normal_consistency`).
* ``laplacian_smoothness``: the mean over vertices of ``|L v|``, ``L`` the uniform graph
  Laplacian (degree on the diagonal, -1 per neighbour; :meth:`studio.api.Mesh.laplacian`).

Both reach the DMTet grid's ``sdf`` and ``deformation`` through the extracted vertex positions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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


def weighted_mesh_regularisers(
    mesh: Mesh, lambda_of: Callable[[Any], float], loss_config: Mapping[str, Any]
) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
    """``sum_name lambda_name * regulariser_name(mesh)`` over :data:`MESH_REGULARISERS` (each
    weight ``lambda_of(loss_config["lambda_<name>"])``, 0 when unset) and the values to log as
    ``loss_<name>``."""
    weights = {
        name: lambda_of(loss_config.get(f"lambda_{name}", 0.0)) for name in MESH_REGULARISERS
    }
    total: torch.Tensor | float = 0.0
    logged: dict[str, torch.Tensor] = {}
    for name, value in mesh_regularisers(mesh, weights).items():
        total = total + value * weights[name]
        logged[f"loss_{name}"] = value.detach()
    return total, logged
