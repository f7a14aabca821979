"""Materials turn geometry features (+ shading inputs) into colours.

``forward(features, viewdirs=..., positions=..., light_positions=..., shading_normal=..., **kw)``
receives per-sample tensors ``[N, ...]`` and returns colours ``[N, C]``. ``requires_normal`` tells
the renderer to ask the geometry for normals; ``requires_tangent`` asks a mesh renderer for the
UV tangent frame too (``tangent [N, 3]``, ``tangent_sign [N, 1]``, see :attr:`Mesh.v_tng`).
"""

from __future__ import annotations

from typing import Any

import torch

from studio.base import BaseModule


class BaseMaterial(BaseModule):
    requires_normal: bool = False
    requires_tangent: bool = False
    config_path = "system.material"

    def forward(self, features: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def export(self, features: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Texture channels for baking (default: none).

        Called as ``material.export(**geometry.export(points))`` by the mesh exporter at surface
        points (texels of the UV atlas, or vertices). Returns a dict of per-point channels, each
        ``[N, C]`` with values in ``[0, 1]``. The names the core knows:

        * ``albedo`` (3): base colour; required for texture / vertex-colour export;
        * ``metallic`` (1) and ``roughness`` (1), optional;
        * ``bump`` (3), optional: a unit tangent-space normal encoded as ``(n + 1) / 2``, OpenGL
          convention: x along the tangent (+U, :attr:`studio.mesh.mesh.Mesh.v_tng`), y along the
          bitangent ``v_tng_sign * (n x t)`` (towards the top of the texture image), z along the
          surface normal; ``(0.5, 0.5, 1)`` is no perturbation.

        Other keys are ignored. Each channel the material gives is baked into its own texture of
        the same UV atlas (see :mod:`studio.exporters.mesh_exporter`).
        """
        return {}
