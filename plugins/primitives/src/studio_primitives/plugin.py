"""Hook implementations of studio-primitives (see studio.hookspecs).

Every registration names an import path, so discovering this plugin imports nothing heavy; the
``studio primitives`` commands import their training modules only when they run.
"""

from typing import Any

from studio.api import Register, hookimpl
from studio_dreamfusion.plugin import GUIDED_METHOD_KEYS

PKG = "studio_primitives"


@hookimpl
def studio_register_models(register: Register) -> None:
    check = f"{PKG}.prompts:check_prompt"
    register("primitives-sd", f"{PKG}.weights:sd_folder", prompt_check=check)
    register("primitives-if", f"{PKG}.weights:if_folder", prompt_check=check)


@hookimpl
def studio_register_methods(register: Register) -> None:
    system = "studio_dreamfusion.system:DreamFusionSystem"
    register(
        "dreamfusion-primitives",
        system,
        preset=f"{PKG}:presets/dreamfusion-primitives.yaml",
        description="DreamFusion on the embedded primitives model (SD form): offline, CPU minutes.",
        **GUIDED_METHOD_KEYS,
    )
    register(
        "dreamfusion-primitives-if",
        system,
        preset=f"{PKG}:presets/dreamfusion-primitives-if.yaml",
        description="DreamFusion on the embedded primitives model (IF form, pixel space).",
        **GUIDED_METHOD_KEYS,
    )


@hookimpl
def studio_register_evaluators(register: Register) -> None:
    register("primitives-r-precision", f"{PKG}.evaluation:evaluate")


@hookimpl
def studio_register_commands(cli: Any) -> None:
    """``studio primitives data|train|train-classifier|sample-check`` (see :mod:`.commands`)."""
    from studio_primitives.commands import primitives_app

    cli.add_typer(primitives_app(), name="primitives")
