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
