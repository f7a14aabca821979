"""Hook implementations of studio-primitives (see studio.hookspecs).

Registrations are added here as the method's components land; each names an import path, so
discovering this plugin imports nothing heavy.
"""

from studio.hookspecs import Register, hookimpl


@hookimpl
def studio_register_evaluators(register: Register) -> None:
    register("primitives-r-precision", "studio_primitives.evaluation:evaluate")
