"""Hook implementations of studio-fantasia3d (see studio.hookspecs).

Every registration names an import path, so discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl
from studio_dreamfusion.plugin import register_guided_methods, register_two_stage_pipelines

PKG = "studio_fantasia3d"
SYSTEM = f"{PKG}.system:Fantasia3DSystem"

#: Single-stage methods: name -> one line for ``studio methods``.
STAGE_METHODS = {
    "fantasia3d": "Fantasia3D geometry stage: an SDF mesh (DMTet) shaped by its normal maps, SD.",
    "fantasia3d-texture": "Fantasia3D texture stage: PBR materials on a fixed mesh, SD.",
    "fantasia3d-primitives": "fantasia3d on the embedded primitives model (CPU).",
    "fantasia3d-texture-primitives": "fantasia3d-texture on the embedded primitives model (CPU).",
}

#: Pipelines: name -> (geometry stage, texture stage, one line).
PIPELINES = {
    "fantasia3d-full": (
        "fantasia3d",
        "fantasia3d-texture",
        "Fantasia3D: geometry from normal maps, then PBR texture (SD).",
    ),
    "fantasia3d-primitives-full": (
        "fantasia3d-primitives",
        "fantasia3d-texture-primitives",
        "Fantasia3D on the embedded primitives model, both stages (CPU-sized).",
    ),
}


@hookimpl
def studio_register_geometries(register):
    register("implicit-sdf", f"{PKG}.geometry.implicit_sdf:ImplicitSDF")


@hookimpl
def studio_register_materials(register):
    register("pbr-material", f"{PKG}.materials.pbr:PBRMaterial")


@hookimpl
def studio_register_methods(register):
    register_guided_methods(register, SYSTEM, PKG, STAGE_METHODS)
    register_two_stage_pipelines(
        register, PIPELINES, ("geometry", "texture"), "system.geometry_convert_from"
    )
