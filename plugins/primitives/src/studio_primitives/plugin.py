"""Hook implementations of studio-primitives (see studio.hookspecs).

Every registration names an import path, so discovering this plugin imports nothing heavy.
"""

from studio.hookspecs import Register, hookimpl

PKG = "studio_primitives"


@hookimpl
def studio_register_models(register: Register) -> None:
    check = f"{PKG}.prompts:check_prompt"
    register("primitives-sd", f"{PKG}.weights:sd_folder", prompt_check=check)
    register("primitives-if", f"{PKG}.weights:if_folder", prompt_check=check)


@hookimpl
def studio_register_methods(register: Register) -> None:
    system = "studio_dreamfusion.system:DreamFusionSystem"
    prompt_key = "system.prompt_processor.prompt"
    register(
        "dreamfusion-primitives",
        system,
        preset=f"{PKG}:presets/dreamfusion-primitives.yaml",
        description="DreamFusion on the embedded primitives model (SD form): offline, CPU minutes.",
        prompt_key=prompt_key,
    )
    register(
        "dreamfusion-primitives-if",
        system,
        preset=f"{PKG}:presets/dreamfusion-primitives-if.yaml",
        description="DreamFusion on the embedded primitives model (IF form, pixel space).",
        prompt_key=prompt_key,
    )


@hookimpl
def studio_register_evaluators(register: Register) -> None:
    register("primitives-r-precision", f"{PKG}.evaluation:evaluate")
