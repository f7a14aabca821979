"""The public plugin API: everything a plugin may import from studio-core, and nothing else.

Plugins (in this repository and outside it) import core only through this module::

    from studio.api import BaseLift3DSystem, ConfigError, hookimpl

Every other ``studio.*`` module is private and may change between releases; CI enforces this
layering with import-linter (``[tool.importlinter]`` in the workspace's ``pyproject.toml``).

Importing this module is cheap: names are imported on first use (PEP 562), so a plugin's
``plugin.py`` can take ``hookimpl`` from here without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    # hooks and typed registrations
    "hookimpl": "studio.hookspecs",
    "Register": "studio.hookspecs",
    "ComponentSpec": "studio.specs",
    "GuidanceSpec": "studio.specs",
    "MethodSpec": "studio.specs",
    "ModelSpec": "studio.specs",
    "StageSpec": "studio.specs",
    # errors
    "StudioError": "studio.errors",
    "ConfigError": "studio.errors",
    "PluginError": "studio.errors",
    "RunDirError": "studio.errors",
    "ModelNotAvailableError": "studio.errors",
    "one_line": "studio.errors",
    # base classes
    "Updateable": "studio.base",
    "BaseObject": "studio.base",
    "BaseModule": "studio.base",
    "BaseSystem": "studio.systems.base",
    "BaseLift3DSystem": "studio.systems.lift3d",
    "build_component": "studio.systems.lift3d",
    "load_component": "studio.systems.lift3d",
    "build_guidance": "studio.systems.lift3d",
    "BaseGeometry": "studio.geometry.base",
    "BaseImplicitGeometry": "studio.geometry.base",
    "BaseExplicitGeometry": "studio.geometry.base",
    "contract_to_unit_cube": "studio.geometry.base",
    "BaseMaterial": "studio.materials.base",
    "BaseBackground": "studio.backgrounds.base",
    "BaseRenderer": "studio.renderers.base",
    "BaseExporter": "studio.exporters.base",
    "DataModule": "studio.data.base",
    "Batch": "studio.data.base",
    "LazySequence": "studio.data.base",
    "RandomCameraDataModule": "studio.data.random_camera",
    "EvalContext": "studio.eval",
    # config helpers
    "structure": "studio.config.convert",
    "unstructure": "studio.config.convert",
    "Scheduled": "studio.config.schedule",
    "scheduled_value": "studio.config.schedule",
    "prompt_library": "studio.prompt_library",
    "Range": "studio.config.bounds",
    "Ordered": "studio.config.bounds",
    "PositiveInt": "studio.config.bounds",
    "NonNegativeInt": "studio.config.bounds",
    "PositiveFloat": "studio.config.bounds",
    "NonNegativeFloat": "studio.config.bounds",
    "UnitFloat": "studio.config.bounds",
    "PixelSize": "studio.config.bounds",
    "PixelSizes": "studio.config.bounds",
    # ranks
    "DistContext": "studio.distributed",
    "context_from_env": "studio.distributed",
    "main_rank_first": "studio.distributed",
    # backends, models and caches
    "choose_backend": "studio.backends",
    "importable": "studio.backends",
    "resolve_model": "studio.models.hub",
    "is_hub_id": "studio.models.hub",
    "weight_variant": "studio.models.files",
    "locate_embedded_model": "studio.models.embedded",
    "canonical_prompt": "studio.models.embedded",
    "cache_dir": "studio.paths",
    # meshes and rasterization
    "Mesh": "studio.mesh.mesh",
    "tet_grid": "studio.mesh.tets",
    "tet_grid_edges": "studio.mesh.tets",
    "marching_tetrahedra": "studio.mesh.isosurface",
    "MarchingTetrahedraHelper": "studio.mesh.isosurface",
    "get_isosurface_helper": "studio.mesh.isosurface",
    "extract_isosurface": "studio.mesh.isosurface",
    "mesh_coverage": "studio.mesh.auto_threshold",
    "read_glb_vertex_attribute": "studio.mesh.io",
    "make_rasterizer": "studio.rasterize",
    "Rasterizer": "studio.rasterize",
    "cameras": "studio.data.cameras",
    # images
    "rgb": "studio.io.saver",
    "grayscale": "studio.io.saver",
    "write_png": "studio.io.images",
    "write_video": "studio.io.images",
    "image_grid": "studio.io.images",
    # checkpoints
    "load_checkpoint": "studio.training.checkpoint",
    # reading device values back without waiting
    "HostCopy": "studio.training.step_logs",
    "find_checkpoint": "studio.rundir",
}

#: Public names whose private definition has another name.
_RENAMED: dict[str, str] = {
    "choose_backend": "choose",
    "locate_embedded_model": "locate",
    "get_isosurface_helper": "get_helper",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"studio.api has no attribute {name!r} (see studio.api.__all__)")
    module = importlib.import_module(module_name)
    target = _RENAMED.get(name, name)
    value = module if module_name.endswith("." + target) else getattr(module, target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what static tools and editors see; at run time names load lazily
    pass
