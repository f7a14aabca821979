"""Hook implementations of studio-latentnerf (see studio.hookspecs).

Registrations are added here as the method's components land; each names an import path, so
discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl

PKG = "studio_latentnerf"


@hookimpl
def studio_register_materials(register):
    register("sd-latent-adapter", f"{PKG}.materials:SDLatentAdapter")
