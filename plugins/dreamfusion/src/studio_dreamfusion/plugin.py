"""Hook implementations of studio-dreamfusion: the rendering stack DreamFusion introduced.

Every registration is an import path; discovering this plugin imports no torch.
"""

from studio.hookspecs import hookimpl

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


@hookimpl
def studio_register_methods(register):
    system = f"{PKG}.system:DreamFusionSystem"
    prompt_key = "system.prompt_processor.prompt"
    register(
        "dreamfusion-sd",
        system,
        preset=f"{PKG}:presets/dreamfusion-sd.yaml",
        description="DreamFusion: SDS from Stable Diffusion 2.1-base into a hash-grid NeRF.",
        prompt_key=prompt_key,
    )
    register(
        "dreamfusion-if",
        system,
        preset=f"{PKG}:presets/dreamfusion-if.yaml",
        description="DreamFusion: SDS from DeepFloyd IF stage I (64x64 pixels) into a NeRF.",
        prompt_key=prompt_key,
    )
    register(
        "sds-2d",
        f"{PKG}.playground:Playground2DSystem",
        preset=f"{PKG}:presets/sds-2d.yaml",
        description="2D playground: optimise one image (rgb or latent) with any guidance.",
        prompt_key=prompt_key,
    )


@hookimpl
def studio_register_data_modules(register):
    register("fixed-view", f"{PKG}.playground:FixedViewDataModule")


@hookimpl
def studio_register_guidances(register):
    register("stable-diffusion", f"{PKG}.guidance.stable_diffusion:StableDiffusionGuidance")
    register("deep-floyd", f"{PKG}.guidance.deep_floyd:DeepFloydGuidance")


@hookimpl
def studio_register_prompt_processors(register):
    register("stable-diffusion", f"{PKG}.prompts.stable_diffusion:StableDiffusionPromptProcessor")
    register("deep-floyd", f"{PKG}.prompts.deep_floyd:DeepFloydPromptProcessor")


@hookimpl
def studio_register_evaluators(register):
    register("clip-r-precision", f"{PKG}.evaluation:evaluate")
