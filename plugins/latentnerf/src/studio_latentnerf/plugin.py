"""Hook implementations of studio-latentnerf (see studio.hookspecs).

Registrations are added here as the method's components land; each names an import path, so
discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl
from studio_dreamfusion.plugin import register_guided_methods, register_two_stage_pipelines

PKG = "studio_latentnerf"


@hookimpl
def studio_register_materials(register):
    register("sd-latent-adapter", f"{PKG}.materials:SDLatentAdapter")


@hookimpl
def studio_register_evaluators(register):
    register("guide-silhouette-iou", f"{PKG}.evaluation:evaluate")


SYSTEM = f"{PKG}.system:LatentNeRFSystem"

#: Single-stage methods: name -> one line for ``studio methods``.
STAGE_METHODS = {
    "latentnerf": "Latent-NeRF latent stage: a NeRF rendered as SD latents (SD 2.1-base).",
    "latentnerf-refine": "Latent-NeRF RGB refinement of a latent-stage run (sd-latent-adapter).",
    "sketchshape": "Sketch-Shape latent stage: Latent-NeRF guided by system.guide_shape.",
    "sketchshape-refine": "Sketch-Shape RGB refinement of a latent-stage run.",
    "latentnerf-primitives": "latentnerf on the embedded primitives model (CPU).",
    "latentnerf-refine-primitives": "latentnerf-refine on the embedded primitives model (CPU).",
    "sketchshape-primitives": "sketchshape on the embedded primitives model (CPU).",
    "sketchshape-refine-primitives": "sketchshape-refine on the embedded primitives model (CPU).",
}

#: ``studio run sketchshape-full guide_shape=cube ...`` for ``system.guide_shape=cube``.
SHORTHANDS = {"guide_shape": "system.guide_shape"}

#: Pipelines: name -> (latent stage, refinement stage, one line).
PIPELINES = {
    "latentnerf-full": ("latentnerf", "latentnerf-refine", "Latent-NeRF: latents, then RGB."),
    "sketchshape-full": ("sketchshape", "sketchshape-refine", "Sketch-Shape: latents, then RGB."),
    "latentnerf-primitives-full": (
        "latentnerf-primitives",
        "latentnerf-refine-primitives",
        "Latent-NeRF on the embedded primitives model, both stages (CPU-sized).",
    ),
    "sketchshape-primitives-full": (
        "sketchshape-primitives",
        "sketchshape-refine-primitives",
        "Sketch-Shape on the embedded primitives model, both stages (CPU-sized).",
    ),
}


@hookimpl
def studio_register_methods(register):
    register_guided_methods(register, SYSTEM, PKG, STAGE_METHODS, shorthands=SHORTHANDS)
    register_two_stage_pipelines(register, PIPELINES, ("latent", "refine"), "system.weights")
