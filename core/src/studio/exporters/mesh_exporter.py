"""``mesh-exporter``: the run's geometry as a mesh file with its colours.

Formats (``fmt``):

* ``obj-mtl`` -- OBJ + MTL with an xatlas UV atlas and a baked albedo texture (``map_Kd``);
* ``obj`` -- OBJ with per-vertex colours (``v x y z r g b``);
* ``glb`` -- binary glTF with the baked texture as base colour (vertex colours when
  ``save_texture`` is off).

The mesh is ``geometry.isosurface()``; with ``isosurface_threshold: auto`` the level is chosen by
matching the mesh's silhouettes to the volume renderer's opacity
(:mod:`studio.mesh.auto_threshold`), and the choice is logged and written to ``threshold.txt``.
Colours come from ``material.export(**geometry.export(points))["albedo"]`` at texel / vertex
positions. The caller (:func:`studio.exporters.base.export_atomically`) provides a staging folder,
so a failure leaves nothing behind.

Each phase prints one line on stderr with its duration as it ends (export runs on rank 0 only),
e.g. ``export: uv atlas 2460 faces -> 1530 uv vertices (xatlas) (2.0 s)``; the two stages of the
threshold search (rendering the volume's opacity, scoring levels), the longest phase, also show a
progress bar while they run.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from studio.errors import StudioError
from studio.exporters.base import BaseExporter
from studio.io.progress import StageBars
from studio.mesh import io as mesh_io
from studio.mesh.mesh import Mesh
from studio.rasterize import make_rasterizer

log = logging.getLogger(__name__)


def albedo_query(system: Any):
    """``points [N, 3] -> albedo [N, 3]`` from the system's geometry and material."""
    geometry, material = system.geometry, system.material

    def query(points: torch.Tensor) -> torch.Tensor:
        geo_out = geometry.export(points)
        exported = material.export(**geo_out)
        if "albedo" not in exported:
            raise StudioError(
                f"The material {type(material).__name__} exports no 'albedo' (it gave "
                f"{sorted(exported)}); the mesh exporter needs a colour per surface point."
            )
        return exported["albedo"][..., :3]

    return query


def positions_per_uv_vertex(mesh: Mesh) -> torch.Tensor:
    """World position of every UV vertex (xatlas splits vertices at seams; faces correspond)."""
    out = torch.zeros(mesh.v_tex.shape[0], 3, dtype=mesh.v_pos.dtype, device=mesh.v_pos.device)
    out[mesh.t_tex_idx.reshape(-1)] = mesh.v_pos[mesh.t_pos_idx.reshape(-1)]
    return out


def say_phase(message: str, started: float) -> None:
    """``export: <message> (<seconds since started> s)`` on stderr."""
    seconds = time.perf_counter() - started
    print(f"export: {message} ({seconds:.1f} s)", file=sys.stderr, flush=True)


class MeshExporter(BaseExporter):
    @attrs.define(kw_only=True)
    class Config:
        fmt: Literal["obj-mtl", "obj", "glb"] = "obj-mtl"
        """File format: ``obj-mtl`` (UV atlas + baked texture), ``obj`` (vertex colours) or
        ``glb`` (binary glTF)."""
        save_name: str = "model"
        """File name of the mesh (and material) without extension."""
        save_normal: bool = False
        """Also write per-vertex normals."""
        save_uv: bool = True
        """Unwrap a UV atlas with xatlas (``obj-mtl``, ``glb``); needed for ``save_texture``."""
        save_texture: bool = True
        """Bake the albedo into a texture (false: no texture; ``glb`` uses vertex colours)."""
        texture_size: int = 1024
        """Side of the square baked texture in pixels (at least 16)."""
        texture_format: Literal["jpg", "png"] = "jpg"
        """Image format of the ``obj-mtl`` texture file."""
        xatlas_chart_options: dict[str, Any] = attrs.Factory(dict)
        """Attributes of ``xatlas.ChartOptions`` to set by name (e.g. ``max_iterations: 4``)."""
        xatlas_pack_options: dict[str, Any] = attrs.Factory(dict)
        """Attributes of ``xatlas.PackOptions`` to set by name; ``padding`` (default 2) is also
        the inpainting radius of the baked texture."""
        context_type: Literal["cuda", "gl"] = "cuda"
        """Accepted for reference configs; unused (``rasterizer_backend`` picks the rasterizer)."""
        rasterizer_backend: Literal["auto", "nvdiffrast", "torch"] = "auto"
        """Rasterizer for texture baking and the ``auto`` threshold: ``nvdiffrast``, ``torch`` or
        ``auto`` (nvdiffrast on CUDA when installed, else torch)."""
        # auto-threshold search (used only when the geometry asks for `auto`)
        auto_threshold_views: int = 6
        """``isosurface_threshold: auto``: orbit views whose silhouettes are matched."""
        auto_threshold_view_size: int = 128
        """``isosurface_threshold: auto``: side of those views in pixels."""
        auto_threshold_resolution: int = 96
        """``isosurface_threshold: auto``: grid resolution of the candidate meshes."""

    def configure(self) -> None:
        cfg = self.cfg
        if cfg.texture_size < 16:
            raise StudioError(
                f"system.exporter.texture_size={cfg.texture_size} is too small; use e.g. 1024."
            )
        if cfg.save_texture and not cfg.save_uv and cfg.fmt != "obj":
            raise StudioError(
                "system.exporter.save_texture=true needs save_uv=true (the texture is baked into "
                "the UV atlas); set save_uv=true, or save_texture=false for a plain mesh."
            )

    # -- the mesh ---------------------------------------------------------------------------------
    def extract_mesh(self, system: Any, out_dir: Path) -> Mesh:
        geometry = system.geometry
        configured = getattr(geometry.cfg, "isosurface_threshold", None)
        if configured == "auto":
            self.resolve_auto_threshold(system, out_dir)
        started = time.perf_counter()
        with torch.no_grad():  # no graph: the exported mesh is a plain copy of the surface
            mesh = geometry.isosurface()
        method = getattr(geometry.cfg, "isosurface_method", None)
        resolution = getattr(geometry.cfg, "isosurface_resolution", None)
        grid = f" ({method}, grid {resolution})" if method and resolution else ""
        say_phase(f"isosurface{grid}: {mesh.n_vertices} vertices, {mesh.n_faces} faces", started)
        return mesh

    def resolve_auto_threshold(self, system: Any, out_dir: Path) -> float:
        from studio.mesh.auto_threshold import silhouette_threshold

        cfg = self.cfg
        started = time.perf_counter()
        bars = StageBars("export: isosurface threshold auto:")
        try:
            choice = silhouette_threshold(
                system,
                rasterizer_backend=cfg.rasterizer_backend,
                n_views=cfg.auto_threshold_views,
                view_size=cfg.auto_threshold_view_size,
                resolution=cfg.auto_threshold_resolution,
                progress=bars,
            )
        finally:
            bars.close()
        system.geometry.set_isosurface_threshold(choice.threshold)
        lines = [choice.describe(), "threshold silhouette_iou"]
        lines += [f"{t:.6g} {s:.4f}" for t, s in choice.tried]
        (out_dir / "threshold.txt").write_text("\n".join(lines) + "\n")
        rendering = dict(bars.finished).get("views", 0.0)
        size = cfg.auto_threshold_view_size
        say_phase(
            f"{choice.describe()}; {rendering:.1f} s of it rendering {cfg.auto_threshold_views} "
            f"views {size}x{size}",
            started,
        )
        return choice.threshold

    # -- export -----------------------------------------------------------------------------------
    def export(self, system: Any, out_dir: Path) -> list[Path]:
        cfg = self.cfg
        mesh = self.extract_mesh(system, out_dir)
        written = [p for p in (out_dir / "threshold.txt",) if p.exists()]
        if cfg.fmt == "obj":
            started = time.perf_counter()
            obj = self._export_vertex_colour_obj(system, mesh, out_dir)
            say_phase(f"wrote {obj.name} with vertex colours", started)
            return [*written, obj]
        texture = None
        if cfg.save_uv:
            started = time.perf_counter()
            mesh.unwrap_uv(cfg.xatlas_chart_options, cfg.xatlas_pack_options)
            atlas = f"{mesh.n_faces} faces -> {mesh.v_tex.shape[0]} uv vertices"
            say_phase(f"uv atlas {atlas} (xatlas)", started)
            if cfg.save_texture:
                started = time.perf_counter()
                texture = self.bake(system, mesh)
                say_phase(f"texture {cfg.texture_size}x{cfg.texture_size} baked", started)
        started = time.perf_counter()
        if cfg.fmt == "glb":
            files = [self._export_glb(system, mesh, texture, out_dir)]
        else:
            files = self._export_obj_mtl(mesh, texture, out_dir)
        say_phase(f"wrote {', '.join(p.name for p in files)}", started)
        return written + files

    def bake(self, system: Any, mesh: Mesh):
        from studio.mesh.texture import bake_texture

        cfg = self.cfg
        rasterizer = make_rasterizer(cfg.rasterizer_backend, mesh.v_pos.device)
        texture, _ = bake_texture(
            positions_per_uv_vertex(mesh),
            mesh.v_tex,
            mesh.t_tex_idx,
            albedo_query(system),
            cfg.texture_size,
            rasterizer,
            padding=int(cfg.xatlas_pack_options.get("padding", 2)),
        )
        return texture

    def _vertex_colours(self, system: Any, mesh: Mesh):
        with torch.no_grad():
            return albedo_query(system)(mesh.v_pos).cpu().numpy()

    def _normals(self, mesh: Mesh):
        return mesh.v_nrm.detach().cpu().numpy() if self.cfg.save_normal else None

    def _export_vertex_colour_obj(self, system: Any, mesh: Mesh, out_dir: Path) -> Path:
        return mesh_io.write_obj(
            out_dir / f"{self.cfg.save_name}.obj",
            mesh.v_pos.cpu().numpy(),
            mesh.t_pos_idx.cpu().numpy(),
            v_nrm=self._normals(mesh),
            v_rgb=self._vertex_colours(system, mesh),
        )

    def _export_obj_mtl(self, mesh: Mesh, texture, out_dir: Path) -> list[Path]:
        cfg = self.cfg
        written = []
        texture_name = None
        if texture is not None:
            texture_name = f"texture_kd.{cfg.texture_format}"
            written.append(mesh_io.write_texture(out_dir / texture_name, texture))
        mtl = mesh_io.write_mtl(out_dir / f"{cfg.save_name}.mtl", map_kd=texture_name)
        uv = cfg.save_uv
        obj = mesh_io.write_obj(
            out_dir / f"{cfg.save_name}.obj",
            mesh.v_pos.cpu().numpy(),
            mesh.t_pos_idx.cpu().numpy(),
            v_nrm=self._normals(mesh),
            v_tex=mesh.v_tex.cpu().numpy() if uv else None,
            t_tex_idx=mesh.t_tex_idx.cpu().numpy() if uv else None,
            mtl_name=mtl.name,
        )
        return [obj, mtl, *written]

    def _export_glb(self, system: Any, mesh: Mesh, texture, out_dir: Path) -> Path:
        path = out_dir / f"{self.cfg.save_name}.glb"
        common = {"v_nrm": self._normals(mesh)}
        if texture is not None:
            return mesh_io.write_glb(
                path,
                mesh.v_pos.cpu().numpy(),
                mesh.t_pos_idx.cpu().numpy(),
                v_tex=mesh.v_tex.cpu().numpy(),
                t_tex_idx=mesh.t_tex_idx.cpu().numpy(),
                texture=texture,
                **common,
            )
        return mesh_io.write_glb(
            path,
            mesh.v_pos.cpu().numpy(),
            mesh.t_pos_idx.cpu().numpy(),
            v_rgb=self._vertex_colours(system, mesh),
            **common,
        )
