"""Hook implementations of studio-magic3d (see studio.hookspecs).

Registrations are added here as the method's components land; each names an import path, so
discovering this plugin imports nothing heavy.
"""

from studio.api import hookimpl

PKG = "studio_magic3d"


@hookimpl
def studio_register_geometries(register):
    register("tetrahedra-sdf-grid", f"{PKG}.geometry.tetrahedra_sdf_grid:TetrahedraSDFGrid")
