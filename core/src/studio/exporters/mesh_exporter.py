"""``mesh-exporter``: the run's geometry as a mesh file with its colours (and PBR maps).

Formats (``fmt``):

* ``obj-mtl`` -- OBJ + MTL with a UV atlas and a baked albedo texture (``map_Kd``);
* ``obj`` -- OBJ with per-vertex colours (``v x y z r g b``);
* ``glb`` -- binary glTF with the baked texture as base colour (vertex colours when
  ``save_texture`` is off).

The mesh is ``geometry.isosurface()``; with ``isosurface_threshold: auto`` the level is chosen by
matching the mesh's silhouettes to the volume renderer's opacity
(:mod:`studio.mesh.auto_threshold`), and the choice is logged and written to ``threshold.txt``.
The UV atlas is the mesh's own when it has one (``Mesh.has_uv``: a texture stage trains on a fixed
mesh unwrapped once, and its normal map lives in that atlas's tangent frame), else xatlas's.

Channels come from ``material.export(**geometry.export(points))`` at texel / vertex positions
(the contract is in :meth:`studio.materials.base.BaseMaterial.export`): ``albedo`` always;
``metallic``, ``roughness`` and ``bump`` (a tangent-space normal map) when the material gives
them, all baked in one pass over the texels into their own textures of the same atlas:

* ``obj-mtl``: ``map_Kd texture_kd``, ``map_Pm texture_metallic`` and ``map_Pr
  texture_roughness`` (grey), the normal map ``texture_nrm`` as both ``map_Bump`` (Blender,
  threestudio) and ``norm`` (MTL's PBR extension: tinyobjloader, Assimp, three.js);
* ``glb``: ``baseColorTexture``; ``metallicRoughnessTexture`` (R 255 unused, G roughness,
  B metallic) with ``metallicFactor 1`` and ``roughnessFactor 1``; ``normalTexture`` with the
  mesh's tangent frame as the ``TANGENT`` attribute (``Mesh.v_tng``, w = ``Mesh.v_tng_sign``)
  and ``NORMAL`` (written whenever there is a normal map, as glTF ignores tangents without it).

A material giving only ``albedo`` gets the same files as before PBR maps existed. The caller
(:func:`studio.exporters.base.export_atomically`) provides a staging folder, so a failure leaves
nothing behind.

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
import numpy as np
import torch

from studio.errors import StudioError
from studio.exporters.base import BaseExporter
from studio.io.progress import StageBars
from studio.mesh import io as mesh_io
from studio.mesh.mesh import Mesh
from studio.rasterize import make_rasterizer

log = logging.getLogger(__name__)


CHANNELS = {"albedo": 3, "metallic": 1, "roughness": 1, "bump": 3}
"""The material export channels the exporter bakes, with their widths (others are ignored)."""


def channels_query(system: Any):
    """``points [N, 3] -> {name: [N, C]}`` of the known :data:`CHANNELS` the system's material
    exports (``albedo`` required: its first 3 channels; ``metallic`` / ``roughness`` may also be
    ``[N]``)."""
    geometry, material = system.geometry, system.material

    def query(points: torch.Tensor) -> dict[str, torch.Tensor]:
        geo_out = geometry.export(points)
        exported = material.export(**geo_out)
        if "albedo" not in exported:
            raise StudioError(
                f"The material {type(material).__name__} exports no 'albedo' (it gave "
                f"{sorted(exported)}); the mesh exporter needs a colour per surface point."
            )
        out = {}
        for name, width in CHANNELS.items():
            if name not in exported:
                continue
            value = exported[name]
            if width == 1 and value.ndim == 1:
                value = value[:, None]
            if name == "albedo":
                value = value[..., :3]
            if value.ndim != 2 or len(value) != len(points) or value.shape[-1] != width:
                raise StudioError(
                    f"The material {type(material).__name__} exports {name!r} with shape "
                    f"{list(value.shape)} for {len(points)} points; the mesh exporter needs "
                    f"[{len(points)}, {width}]."
                )
            out[name] = value
        return out

    return query


def albedo_query(system: Any):
    """``points [N, 3] -> albedo [N, 3]`` from the system's geometry and material."""
    query = channels_query(system)
    return lambda points: query(points)["albedo"]


def unit_normal_map(image: np.ndarray) -> np.ndarray:
    """An encoded tangent-space normal map ``(n + 1) / 2`` with every texel's ``n`` made unit
    length again (after inpainting; ``(0, 0, 1)`` where it vanishes)."""
    n = image.astype(np.float64) * 2.0 - 1.0
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(length > 1e-6, n / np.maximum(length, 1e-6), [0.0, 0.0, 1.0])
    return ((n + 1.0) / 2.0).astype(np.float32)


def nearest_powers_of_two(value: int) -> tuple[int, int]:
    lower = 1 << (max(value, 1).bit_length() - 1)
    return lower, lower * 2


def positions_per_uv_vertex(mesh: Mesh) -> torch.Tensor:
    """World position of every UV vertex (xatlas splits vertices at seams; faces correspond)."""
    out = torch.zeros(mesh.v_tex.shape[0], 3, dtype=mesh.v_pos.dtype, device=mesh.v_pos.device)
    out[mesh.t_tex_idx.reshape(-1)] = mesh.v_pos[mesh.t_pos_idx.reshape(-1)]
    return out


def check_atlas(mesh: Mesh, slack: float = 1e-4) -> None:
    """Refuse a kept UV atlas outside ``[0, 1]`` (the baked textures cover only that square;
    glTF validators want it too); round-off up to ``slack`` is clamped."""
    lo, hi = float(mesh.v_tex.min()), float(mesh.v_tex.max())
    if lo < -slack or hi > 1.0 + slack:
        raise StudioError(
            f"The mesh's UV atlas spans [{lo:g}, {hi:g}], but the exporter bakes textures over "
            f"[0, 1] only; give the mesh UVs in [0, 1] (e.g. unwrap it with mesh.unwrap_uv())."
        )
    if lo < 0.0 or hi > 1.0:
        mesh.set_uv(mesh.v_tex.clamp(0.0, 1.0), mesh.t_tex_idx)


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
        """Write a UV atlas (``obj-mtl``, ``glb``): the mesh's own when it has one, else unwrapped
        with xatlas; needed for ``save_texture``."""
        save_texture: bool = True
        """Bake the albedo (and the material's metallic, roughness and normal map when it exports
        them) into textures (false: no texture; ``glb`` uses vertex colours)."""
        texture_size: int = 1024
        """Side of the square baked textures in pixels (at least 16; a power of two for
        ``glb``)."""
        texture_format: Literal["jpg", "png"] = "jpg"
        """Image format of the ``obj-mtl`` texture files."""
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
        size = cfg.texture_size
        if cfg.fmt == "glb" and cfg.save_texture and size & (size - 1):
            lower, upper = nearest_powers_of_two(size)
            raise StudioError(
                f"system.exporter.texture_size={size} is not a power of two, which glTF textures "
                f"(fmt: glb) should be for mip-mapping and validators; use {lower} or {upper}."
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
        textures = None
        if cfg.save_uv:
            started = time.perf_counter()
            if mesh.has_uv:
                check_atlas(mesh)
                atlas = f"{mesh.n_faces} faces -> {mesh.v_tex.shape[0]} uv vertices"
                say_phase(f"uv atlas {atlas} (kept from the mesh)", started)
            else:
                mesh.unwrap_uv(cfg.xatlas_chart_options, cfg.xatlas_pack_options)
                atlas = f"{mesh.n_faces} faces -> {mesh.v_tex.shape[0]} uv vertices"
                say_phase(f"uv atlas {atlas} (xatlas)", started)
            if cfg.save_texture:
                started = time.perf_counter()
                textures = self.bake(system, mesh)
                size = f"{cfg.texture_size}x{cfg.texture_size}"
                if list(textures) == ["albedo"]:
                    say_phase(f"texture {size} baked", started)
                else:
                    say_phase(f"textures {size} baked ({', '.join(textures)})", started)
        started = time.perf_counter()
        if cfg.fmt == "glb":
            files = [self._export_glb(system, mesh, textures, out_dir)]
        else:
            files = self._export_obj_mtl(mesh, textures, out_dir)
        say_phase(f"wrote {', '.join(p.name for p in files)}", started)
        return written + files

    def bake(self, system: Any, mesh: Mesh) -> dict[str, np.ndarray]:
        """``{channel: [S, S, C] float32}`` for the channels of :data:`CHANNELS` the material
        exports, baked in one pass over the texels (``bump`` re-normalised per texel)."""
        from studio.mesh.texture import bake_textures

        cfg = self.cfg
        rasterizer = make_rasterizer(cfg.rasterizer_backend, mesh.v_pos.device)
        textures, _ = bake_textures(
            positions_per_uv_vertex(mesh),
            mesh.v_tex,
            mesh.t_tex_idx,
            channels_query(system),
            cfg.texture_size,
            rasterizer,
            padding=int(cfg.xatlas_pack_options.get("padding", 2)),
        )
        if "bump" in textures:
            textures["bump"] = unit_normal_map(textures["bump"])
        return textures

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

    def _export_obj_mtl(self, mesh: Mesh, textures, out_dir: Path) -> list[Path]:
        cfg = self.cfg
        written = []
        names: dict[str, str] = {}
        for channel, stem in (
            ("albedo", "texture_kd"),
            ("metallic", "texture_metallic"),
            ("roughness", "texture_roughness"),
            ("bump", "texture_nrm"),
        ):
            if textures is not None and channel in textures:
                names[channel] = f"{stem}.{cfg.texture_format}"
                written.append(mesh_io.write_texture(out_dir / names[channel], textures[channel]))
        mtl = mesh_io.write_mtl(
            out_dir / f"{cfg.save_name}.mtl",
            map_kd=names.get("albedo"),
            map_pm=names.get("metallic"),
            map_pr=names.get("roughness"),
            map_bump=names.get("bump"),
            norm=names.get("bump"),
        )
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

    def _export_glb(self, system: Any, mesh: Mesh, textures, out_dir: Path) -> Path:
        path = out_dir / f"{self.cfg.save_name}.glb"
        if textures is not None:
            pbr: dict[str, Any] = {"v_nrm": self._normals(mesh)}
            for channel in ("metallic", "roughness"):
                pbr[channel] = textures.get(channel)
            if "bump" in textures:
                tangents = torch.cat([mesh.v_tng, mesh.v_tng_sign], dim=-1)
                pbr["normal_map"] = textures["bump"]
                pbr["v_tng"] = tangents.detach().cpu().numpy()
                pbr["v_nrm"] = mesh.v_nrm.detach().cpu().numpy()  # glTF needs both
            return mesh_io.write_glb(
                path,
                mesh.v_pos.cpu().numpy(),
                mesh.t_pos_idx.cpu().numpy(),
                v_tex=mesh.v_tex.cpu().numpy(),
                t_tex_idx=mesh.t_tex_idx.cpu().numpy(),
                texture=textures["albedo"],
                **pbr,
            )
        return mesh_io.write_glb(
            path,
            mesh.v_pos.cpu().numpy(),
            mesh.t_pos_idx.cpu().numpy(),
            v_rgb=self._vertex_colours(system, mesh),
            v_nrm=self._normals(mesh),
        )
