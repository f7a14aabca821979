"""Hook implementations of studio-prolificdreamer (see studio.hookspecs).

Registrations are added here as the method's components land; each names an import path, so
discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl

PKG = "studio_prolificdreamer"


@hookimpl
def studio_register_guidances(register):
    register(
        "stable-diffusion-vsd",
        f"{PKG}.guidance.stable_diffusion_vsd:StableDiffusionVSDGuidance",
        model_suffix="-sd",
    )
