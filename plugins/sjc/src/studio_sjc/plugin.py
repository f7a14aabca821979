"""Hook implementations of studio-sjc (see studio.hookspecs).

Every registration names an import path, so discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl
from studio_dreamfusion.plugin import register_guided_methods

PKG = "studio_sjc"

#: name -> one line for ``studio methods``.
METHODS = {
    "sjc": "Score Jacobian Chaining: a voxel grid of SD latents trained by the SJC score.",
    "sjc-primitives": "SJC on the embedded primitives model (SD form), sized for a CPU.",
}


@hookimpl
def studio_register_methods(register):
    register_guided_methods(register, f"{PKG}.system:SJCSystem", PKG, METHODS)
