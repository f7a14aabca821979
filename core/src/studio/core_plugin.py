"""studio-core's own registrations, made through the same hooks as any plugin."""

from __future__ import annotations

from studio.hookspecs import Register, hookimpl


@hookimpl
def studio_register_data_modules(register: Register) -> None:
    register("random-camera", "studio.data.random_camera:RandomCameraDataModule")


@hookimpl
def studio_register_renderers(register: Register) -> None:
    register("nvdiff-rasterizer", "studio.renderers.nvdiff_rasterizer:NVDiffRasterizer")


@hookimpl
def studio_register_exporters(register: Register) -> None:
    register("mesh-exporter", "studio.exporters.mesh_exporter:MeshExporter")
