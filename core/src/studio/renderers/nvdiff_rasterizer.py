"""``nvdiff-rasterizer``: render the geometry's isosurface mesh by rasterization.

The mesh (``geometry.isosurface()``) is projected with ``mvp_mtx`` and rasterized; opacity and
normals come from the mesh alone, colours from the geometry's features at the visible surface points
shaded by the material, composited over the background. A material with ``requires_tangent`` (a
bump map) also gets the mesh's UV tangent frame per pixel (``tangent``, ``tangent_sign``).
Silhouettes are antialiased by both backends, which also gives the vertices visibility
(silhouette) gradients: nvdiffrast's analytic antialiasing on CUDA, the same scheme in PyTorch
elsewhere (:mod:`studio.rasterize.antialias`).

Backends (``backend: auto | nvdiffrast | torch``): ``auto`` uses nvdiffrast's CUDA context for
meshes on a CUDA device when nvdiffrast is installed, else the PyTorch rasterizer. nvdiffrast's
OpenGL context is never used: ``context_type: gl`` is accepted for threestudio configs and means
``cuda``.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F

from studio.backends import choose
from studio.rasterize import Rasterizer, make_rasterizer
from studio.renderers.base import BaseRenderer

log = logging.getLogger(__name__)

#: Batch keys forwarded to the material (shading overrides used in evaluation and by presets).
SHADING_KEYS = ("ambient_ratio", "shading")


class NVDiffRasterizer(BaseRenderer):
    @attrs.define(kw_only=True)
    class Config(BaseRenderer.Config):
        context_type: Literal["cuda", "gl"] = "cuda"
        """nvdiffrast context; ``gl`` is accepted for reference configs and means ``cuda``."""
        backend: Literal["auto", "nvdiffrast", "torch"] = "auto"
        """Rasterizer: ``nvdiffrast`` (CUDA), ``torch`` (anywhere, same antialiasing) or ``auto``
        (nvdiffrast for CUDA meshes when installed, else torch)."""

    def configure(self) -> None:
        if self.cfg.context_type == "gl":
            log.warning(
                "%s.context_type=gl: studio never uses nvdiffrast's OpenGL context; rasterizing "
                "with the CUDA context instead (set context_type: cuda to silence this).",
                self.config_path,
            )
        # fail at construction, not at the first render, when a forced backend cannot run
        choose("rasterizer", self.cfg.backend, cuda=torch.cuda.is_available())
        self._rasterizers: dict[str, Rasterizer] = {}

    def rasterizer_for(self, device: torch.device) -> Rasterizer:
        """The rasterizer for tensors on ``device`` (one per device, built on first use)."""
        key = str(device)
        if key not in self._rasterizers:
            self._rasterizers[key] = make_rasterizer(self.cfg.backend, device)
        return self._rasterizers[key]

    def forward(
        self,
        mvp_mtx: torch.Tensor,
        camera_positions: torch.Tensor,
        light_positions: torch.Tensor,
        height: int,
        width: int,
        render_rgb: bool = True,
        **batch: Any,
    ) -> dict[str, Any]:
        """Render ``B`` views ``[B, H, W, C]``: ``opacity``, ``comp_normal`` (normals mapped to
        ``[0, 1]``, zero on the background), ``comp_position`` (the surface's world points, not
        antialiased, zero on the background) and, with ``render_rgb``, ``comp_rgb`` and
        ``comp_rgb_bg``; plus the rendered ``mesh``."""
        mesh = self.geometry.isosurface()
        rasterizer = self.rasterizer_for(mesh.v_pos.device)
        v_pos, tri = mesh.v_pos, mesh.t_pos_idx
        homogeneous = torch.cat([v_pos, torch.ones_like(v_pos[:, :1])], dim=-1)
        pos_clip = homogeneous @ mvp_mtx.to(v_pos).transpose(1, 2)
        rast = rasterizer.rasterize(pos_clip, tri, (height, width))
        mask = (rast[..., 3:] > 0).to(v_pos.dtype)

        def antialias(image: torch.Tensor) -> torch.Tensor:
            return rasterizer.antialias(image, rast, pos_clip, tri)

        out: dict[str, Any] = {"opacity": antialias(mask), "mesh": mesh}
        normal = F.normalize(rasterizer.interpolate(mesh.v_nrm, rast, tri), dim=-1)
        out["comp_normal"] = antialias(torch.lerp(torch.zeros_like(normal), (normal + 1) / 2, mask))
        positions = rasterizer.interpolate(v_pos, rast, tri)
        out["comp_position"] = positions * mask
        if not render_rgb:
            return out

        selector = mask[..., 0] > 0
        viewdirs = F.normalize(positions - camera_positions[:, None, None, :].to(v_pos), dim=-1)
        # like the reference: background pixels look along the direction to the world origin
        background = self.background(dirs=viewdirs)
        foreground = torch.zeros_like(background)
        if bool(selector.any()):
            points = positions[selector]
            lights = light_positions[:, None, None, :].to(v_pos).expand_as(positions)
            features = self.geometry(points, output_normal=False)["features"]
            shading: dict[str, Any] = {k: batch[k] for k in SHADING_KEYS if k in batch}
            if self.material.requires_normal:
                shading["shading_normal"] = normal[selector]
            if self.material.requires_tangent:
                tangent, sign = self.tangents(mesh, rasterizer, rast)
                shading["tangent"], shading["tangent_sign"] = tangent[selector], sign[selector]
            color = self.material(
                features=features,
                positions=points,
                light_positions=lights[selector],
                viewdirs=viewdirs[selector],
                **shading,
            )
            foreground = torch.index_put(
                color.new_zeros(*selector.shape, color.shape[-1]), (selector,), color
            )
        out["comp_rgb"] = antialias(torch.lerp(background, foreground, mask))
        out["comp_rgb_bg"] = background
        return out

    @staticmethod
    def tangents(
        mesh: Any, rasterizer: Rasterizer, rast: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel UV tangents ``[B, H, W, 3]`` and their handedness ``[B, H, W, 1]`` (exactly
        +-1) for materials with ``requires_tangent`` (bump maps). A mesh without UVs is unwrapped
        first (xatlas, once per mesh object: a fixed geometry's cached mesh keeps its atlas)."""
        if not mesh.has_uv:
            mesh.unwrap_uv()
        tri = mesh.t_pos_idx
        tangent = F.normalize(rasterizer.interpolate(mesh.v_tng, rast, tri), dim=-1)
        sign = rasterizer.interpolate(mesh.v_tng_sign, rast, tri)
        return tangent, torch.where(sign < 0, -torch.ones_like(sign), torch.ones_like(sign))
