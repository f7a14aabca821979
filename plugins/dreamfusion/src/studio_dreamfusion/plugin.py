"""Hook implementations of studio-dreamfusion: the rendering stack DreamFusion introduced.

Every registration is an import path; discovering this plugin imports no torch.
"""

from typing import Any

from studio.api import hookimpl

PKG = "studio_dreamfusion"


@hookimpl
def studio_register_geometries(register):
    register("implicit-volume", f"{PKG}.geometry.implicit_volume:ImplicitVolume")
    register("volume-grid", f"{PKG}.geometry.volume_grid:VolumeGrid")


@hookimpl
def studio_register_materials(register):
    register("diffuse-with-point-light", f"{PKG}.materials:DiffuseWithPointLight")
    register("no-material", f"{PKG}.materials:NoMaterial")
    register("neural-radiance", f"{PKG}.materials:NeuralRadiance")


@hookimpl
def studio_register_backgrounds(register):
    register("neural-environment-map", f"{PKG}.backgrounds:NeuralEnvironmentMap")
    register("solid-color", f"{PKG}.backgrounds:SolidColor")
    register("textured", f"{PKG}.backgrounds:Textured")


@hookimpl
def studio_register_renderers(register):
    register("nerf-volume", f"{PKG}.renderers.nerf_volume:NeRFVolumeRenderer")


#: Where every method with a prompt processor and a guidance keeps what the CLI shorthands set
#: (``prompt=``, ``model=``) and what ``studio eval`` reads; plugins building on DreamFusion's
#: components register their methods with these too.
GUIDED_METHOD_KEYS = {
    "prompt_key": "system.prompt_processor.prompt",
    "negative_prompt_key": "system.prompt_processor.negative_prompt",
    "model_keys": (
        "system.prompt_processor.pretrained_model_name_or_path",
        "system.guidance.pretrained_model_name_or_path",
    ),
    "guidance_type_key": "system.guidance_type",
}


def register_guided_methods(
    register, system: str, package: str, methods: dict[str, str], **fields: Any
) -> None:
    """Register each ``name -> description`` of ``methods`` as a guided method of ``system``
    with its preset ``<package>:presets/<name>.yaml`` (for plugins building on these parts);
    ``fields``: more ``MethodSpec`` fields for every one (e.g. ``shorthands``), or ones that
    replace :data:`GUIDED_METHOD_KEYS`' (e.g. more ``model_keys``)."""
    for name, description in methods.items():
        register(
            name,
            system,
            preset=f"{package}:presets/{name}.yaml",
            description=description,
            **{**GUIDED_METHOD_KEYS, **fields},
        )


def register_two_stage_pipelines(
    register, pipelines: dict[str, tuple[str, str, str]], stages: tuple[str, str], takes: str
) -> None:
    """Register each ``name -> (first method, second method, description)`` as a pipeline of two
    stages named ``stages``; the second stage's ``takes`` key receives the first's run."""
    for name, (first, second, description) in pipelines.items():
        register(
            name,
            stages=[
                {"name": stages[0], "method": first},
                {"name": stages[1], "method": second, "takes": takes},
            ],
            description=description,
        )


@hookimpl
def studio_register_methods(register):
    system = f"{PKG}.system:DreamFusionSystem"
    register(
        "dreamfusion-sd",
        system,
        preset=f"{PKG}:presets/dreamfusion-sd.yaml",
        description="DreamFusion: SDS from Stable Diffusion 2.1-base into a hash-grid NeRF.",
        **GUIDED_METHOD_KEYS,
    )
    register(
        "dreamfusion-if",
        system,
        preset=f"{PKG}:presets/dreamfusion-if.yaml",
        description="DreamFusion: SDS from DeepFloyd IF stage I (64x64 pixels) into a NeRF.",
        **GUIDED_METHOD_KEYS,
    )
    register(
        "sds-2d",
        f"{PKG}.playground:Playground2DSystem",
        preset=f"{PKG}:presets/sds-2d.yaml",
        description="2D playground: optimise one image (rgb or latent) with any guidance.",
        **GUIDED_METHOD_KEYS,
    )


@hookimpl
def studio_register_data_modules(register):
    register("fixed-view", f"{PKG}.playground:FixedViewDataModule")


@hookimpl
def studio_register_guidances(register):
    register(
        "stable-diffusion",
        f"{PKG}.guidance.stable_diffusion:StableDiffusionGuidance",
        model_suffix="-sd",
    )
    register("deep-floyd", f"{PKG}.guidance.deep_floyd:DeepFloydGuidance", model_suffix="-if")


@hookimpl
def studio_register_prompt_processors(register):
    register("stable-diffusion", f"{PKG}.prompts.stable_diffusion:StableDiffusionPromptProcessor")
    register("deep-floyd", f"{PKG}.prompts.deep_floyd:DeepFloydPromptProcessor")


@hookimpl
def studio_register_evaluators(register):
    register("clip-r-precision", f"{PKG}.evaluation:evaluate")
