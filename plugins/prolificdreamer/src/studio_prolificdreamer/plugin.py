"""Hook implementations of studio-prolificdreamer (see studio.hookspecs).

Every registration names an import path, so discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl
from studio_dreamfusion.plugin import GUIDED_METHOD_KEYS, register_guided_methods

PKG = "studio_prolificdreamer"
SYSTEM = f"{PKG}.system:ProlificDreamerSystem"

#: Where ``model=NAME`` points a VSD stage: the pretrained model and the LoRA's base as well (an
#: offline model such as the primitives one must replace both).
VSD_MODEL_KEYS = (
    *GUIDED_METHOD_KEYS["model_keys"],
    "system.guidance.pretrained_model_name_or_path_lora",
)

#: Stages trained through VSD: name -> one line for ``studio methods``.
VSD_STAGES = {
    "prolificdreamer": "ProlificDreamer stage 1: a hash-grid NeRF by VSD (SD 2.1 + LoRA).",
    "prolificdreamer-texture": "ProlificDreamer stage 3: the fixed mesh's texture by VSD.",
    "prolificdreamer-scene": "ProlificDreamer for scenes: cameras inside, a hole at the centre.",
    "prolificdreamer-primitives": "prolificdreamer on the embedded primitives model (CPU).",
    "prolificdreamer-texture-primitives": "prolificdreamer-texture on the primitives model (CPU).",
}

#: Stages trained through SDS.
SDS_STAGES = {
    "prolificdreamer-geometry": "ProlificDreamer stage 2: DMTet from the NeRF, SDS on normals.",
    "prolificdreamer-geometry-primitives": "prolificdreamer-geometry on the primitives model (CPU).",
}

#: Pipelines: name -> (stage methods in order, one line).
PIPELINES = {
    "prolificdreamer-full": (
        ("prolificdreamer", "prolificdreamer-geometry", "prolificdreamer-texture"),
        "ProlificDreamer: coarse NeRF, mesh geometry, mesh texture (VSD, SDS, VSD).",
    ),
    "prolificdreamer-primitives-full": (
        (
            "prolificdreamer-primitives",
            "prolificdreamer-geometry-primitives",
            "prolificdreamer-texture-primitives",
        ),
        "ProlificDreamer on the embedded primitives model, all three stages (CPU-sized).",
    ),
}
STAGE_NAMES = ("coarse", "geometry", "texture")


@hookimpl
def studio_register_guidances(register):
    register(
        "stable-diffusion-vsd",
        f"{PKG}.guidance.stable_diffusion_vsd:StableDiffusionVSDGuidance",
        model_suffix="-sd",
    )


@hookimpl
def studio_register_methods(register):
    register_guided_methods(register, SYSTEM, PKG, VSD_STAGES, model_keys=VSD_MODEL_KEYS)
    register_guided_methods(register, SYSTEM, PKG, SDS_STAGES)
    for name, (methods, description) in PIPELINES.items():
        stages = [{"name": STAGE_NAMES[0], "method": methods[0]}]
        stages += [
            {"name": stage, "method": method, "takes": "system.geometry_convert_from"}
            for stage, method in zip(STAGE_NAMES[1:], methods[1:], strict=True)
        ]
        register(name, stages=stages, description=description)
