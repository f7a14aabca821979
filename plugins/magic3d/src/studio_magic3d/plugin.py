"""Hook implementations of studio-magic3d (see studio.hookspecs).

Every registration names an import path, so discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl
from studio_dreamfusion.plugin import register_guided_methods, register_two_stage_pipelines

PKG = "studio_magic3d"
SYSTEM = f"{PKG}.system:Magic3DSystem"

#: Single-stage methods: name -> one line for ``studio methods``.
STAGE_METHODS = {
    "magic3d-coarse-sd": "Magic3D coarse stage: a hash-grid NeRF by SDS from Stable Diffusion.",
    "magic3d-coarse-if": "Magic3D coarse stage: a hash-grid NeRF by SDS from DeepFloyd IF.",
    "magic3d-refine-sd": "Magic3D refine stage: a DMTet mesh from a coarse run, 512x512, SD.",
    "magic3d-coarse-primitives": "magic3d-coarse-sd on the embedded primitives model (CPU).",
    "magic3d-coarse-primitives-if": "magic3d-coarse-if on the embedded primitives model (CPU).",
    "magic3d-refine-primitives": "magic3d-refine-sd on the embedded primitives model (CPU).",
}

#: Pipelines: name -> (coarse stage method, refine stage method, one line).
PIPELINES = {
    "magic3d-sd": ("magic3d-coarse-sd", "magic3d-refine-sd", "Magic3D: SD coarse NeRF, SD mesh."),
    "magic3d-if": (
        "magic3d-coarse-if",
        "magic3d-refine-sd",
        "Magic3D as recommended: IF coarse NeRF, then the SD mesh refinement.",
    ),
    "magic3d-primitives": (
        "magic3d-coarse-primitives",
        "magic3d-refine-primitives",
        "Magic3D on the embedded primitives model, SD form (CPU-sized).",
    ),
    "magic3d-primitives-if": (
        "magic3d-coarse-primitives-if",
        "magic3d-refine-primitives",
        "Magic3D on the embedded primitives model: IF coarse, SD refine (CPU-sized).",
    ),
}


@hookimpl
def studio_register_geometries(register):
    register("tetrahedra-sdf-grid", f"{PKG}.geometry.tetrahedra_sdf_grid:TetrahedraSDFGrid")


@hookimpl
def studio_register_methods(register):
    register_guided_methods(register, SYSTEM, PKG, STAGE_METHODS)
    register_two_stage_pipelines(
        register, PIPELINES, ("coarse", "refine"), "system.geometry_convert_from"
    )
