"""Hook specifications: the whole contract between studio and its plugins.

A plugin is a module (or object) exposed through the entry-point group ``studio.plugins``::

    [project.entry-points."studio.plugins"]
    my_plugin = "my_package.plugin"

and implementing any of the hooks below with ``@hookimpl`` (``from studio.api import hookimpl``).
A hook whose name is not one of these is refused (the plugin is listed as broken), so a misspelt
hook cannot be silently ignored.

Each ``studio_register_<kind>s`` hook receives a ``register`` callback and calls it once per name
it provides. Registrations are *lazy*: they name an import path ``"package.module:Attribute"``
instead of the object, so listing plugins or showing ``studio --help`` never imports torch or a
plugin's heavy modules. ``register`` builds the kind's typed spec (:mod:`studio.specs`) from its
arguments (``register(name, target, **fields)``) or takes a spec instance; a field the spec does
not have is an error naming the plugin. Names are global per kind: two distributions registering
the same name is an error naming both.

The list of kinds (:data:`KIND_HOOKS`) is derived from the hooks declared here with
:func:`kind_hook`. Core's own components register through these same hooks
(``studio.core_plugin``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pluggy

from studio.specs import ComponentSpec, GuidanceSpec, MethodSpec, ModelSpec

PROJECT_NAME = "studio"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[..., None]

#: kind -> (hook name, spec class), in the order of ``studio plugins list``.
KIND_HOOKS: dict[str, tuple[str, type]] = {}

_F = TypeVar("_F", bound=Callable[..., Any])


def kind_hook(kind: str, spec: type) -> Callable[[_F], _F]:
    """Declare ``fn`` as the registration hook of ``kind``, whose ``register`` builds ``spec``."""

    def declare(fn: _F) -> _F:
        KIND_HOOKS[kind] = (fn.__name__, spec)
        return hookspec(fn)

    return declare


@kind_hook("method", MethodSpec)
def studio_register_methods(register: Register) -> None:
    """Register methods: what ``studio run METHOD`` runs (:class:`studio.specs.MethodSpec`).

    A single-stage method::

        register(
            "dreamfusion-sd",
            system="studio_dreamfusion.system:DreamFusionSystem",
            preset="studio_dreamfusion:presets/dreamfusion-sd.yaml",
            description="DreamFusion: SDS from Stable Diffusion into a NeRF.",
            prompt_key="system.prompt_processor.prompt",
            negative_prompt_key="system.prompt_processor.negative_prompt",
            model_keys=["system.prompt_processor.pretrained_model_name_or_path",
                        "system.guidance.pretrained_model_name_or_path"],
            guidance_type_key="system.guidance_type",
        )

    A pipeline runs registered single-stage methods in order in one run directory, each stage
    taking the previous stage's run directory at its ``takes`` key (the stage methods here are
    placeholders for two methods the plugin registers)::

        register(
            "my-method",
            stages=[
                {"name": "coarse", "method": "my-method-coarse"},
                {"name": "refine", "method": "my-method-refine",
                 "takes": "system.geometry_convert_from"},
            ],
            description="A coarse NeRF, then a refined mesh.",
        )

    ``preset`` is package data holding the full experiment config (``method``, ``name``,
    ``data_type``, ``data``, ``system``, ``trainer``, ...); it may start with ``extends: OTHER`` to
    inherit another method's preset and list only what differs.
    """


@kind_hook("data", ComponentSpec)
def studio_register_data_modules(register: Register) -> None:
    """Register data modules (top-level ``data_type``): the cameras (or other batches) a run trains on.

    A data module subclasses ``studio.api.DataModule``. Example (core's own):
    ``register("random-camera", "studio.data.random_camera:RandomCameraDataModule")``.
    """


@kind_hook("geometry", ComponentSpec)
def studio_register_geometries(register: Register) -> None:
    """Register geometry classes (``system.geometry_type``).

    A geometry is an ``nn.Module`` (``studio.api.BaseGeometry`` or one of its subclasses) with a
    nested attrs ``Config``. Implicit geometries answer density/SDF and features at points; explicit
    ones hold a mesh. A geometry may be created from another run's geometry
    (``system.geometry_convert_from``) by overriding ``create_from``. Example:
    ``register("implicit-volume", "studio_dreamfusion.geometry.implicit_volume:ImplicitVolume")``.
    """


@kind_hook("material", ComponentSpec)
def studio_register_materials(register: Register) -> None:
    """Register materials (``system.material_type``): features + shading inputs -> colour.

    Example: ``register("diffuse-with-point-light", "studio_dreamfusion.materials:DiffuseWithPointLight")``.
    """


@kind_hook("background", ComponentSpec)
def studio_register_backgrounds(register: Register) -> None:
    """Register backgrounds (``system.background_type``): ray directions -> colour behind the object.

    Example: ``register("solid-color", "studio_dreamfusion.backgrounds:SolidColor")``.
    """


@kind_hook("renderer", ComponentSpec)
def studio_register_renderers(register: Register) -> None:
    """Register renderers (``system.renderer_type``).

    A renderer is built with ``geometry=``, ``material=`` and ``background=`` and turns a camera
    batch into images (``comp_rgb``, ``opacity``, ``depth``, ...). Example (core's own):
    ``register("nvdiff-rasterizer", "studio.renderers.nvdiff_rasterizer:NVDiffRasterizer")``.
    """


@kind_hook("guidance", GuidanceSpec)
def studio_register_guidances(register: Register) -> None:
    """Register guidance objects (``system.guidance_type``): images + prompt -> distillation loss.

    Guidance is loaded only when training needs it, never for ``studio test`` or ``studio
    export``. ``model_suffix`` (:class:`studio.specs.GuidanceSpec`) names the model-family variant
    it loads. Example: ``register("stable-diffusion",
    "studio_dreamfusion.guidance.stable_diffusion:StableDiffusionGuidance", model_suffix="-sd")``.
    """


@kind_hook("prompt_processor", ComponentSpec)
def studio_register_prompt_processors(register: Register) -> None:
    """Register prompt processors (``system.prompt_processor_type``): prompt -> text embeddings.

    Example: ``register("stable-diffusion",
    "studio_dreamfusion.prompts.stable_diffusion:StableDiffusionPromptProcessor")``.
    """


@kind_hook("exporter", ComponentSpec)
def studio_register_exporters(register: Register) -> None:
    """Register exporters (``system.exporter_type``) used by ``studio export RUN_DIR``.

    An exporter receives the trained system and writes the files (meshes, textures). Example
    (core's own): ``register("mesh-exporter", "studio.exporters.mesh_exporter:MeshExporter")``.
    """


@kind_hook("evaluator", ComponentSpec)
def studio_register_evaluators(register: Register) -> None:
    """Register evaluators run by ``studio eval RUN_DIR`` (all registered ones, or those named).

    The target is a callable ``evaluate(context: studio.api.EvalContext) -> dict[str, Any]``: the
    context holds the run directory, its parsed config, its prompt (read at the method's
    ``prompt_key``), the test step and the rgb columns of the run's test frames (``uint8 [H, W,
    3]`` each, in orbit order). It returns JSON-ready metrics; an evaluator that does not apply to
    the run (wrong prompt vocabulary, no reference model) returns ``{"applicable": False,
    "reason": "..."}`` instead of raising. Evaluators load no guidance model. Example:
    ``register("primitives-r-precision", "studio_primitives.evaluation:evaluate")``.
    """


@kind_hook("model", ModelSpec)
def studio_register_models(register: Register) -> None:
    """Register named embedded models: pretrained pipelines a plugin ships inside its package.

    The target is a zero-argument callable returning the local folder (``pathlib.Path``) of a
    diffusers or transformers pipeline saved with ``save_pretrained``. Configs name the model like a
    hub id (``pretrained_model_name_or_path: primitives-sd``) and model resolution calls the target
    only then: an existing local folder of that name comes first, then registered names, then the
    hub. By convention a model family ``NAME`` registers one variant per guidance, ``NAME`` plus
    the guidance's ``model_suffix`` (``NAME-sd``, ``NAME-if``), which ``studio run METHOD
    model=NAME`` picks from. ``prompt_check`` (:class:`studio.specs.ModelSpec`) rejects prompts a
    small-vocabulary model cannot follow before anything is created. Example:
    ``register("primitives-sd", "studio_primitives.weights:sd_folder",
    prompt_check="studio_primitives.prompts:check_prompt")``.
    """


@hookspec
def studio_register_commands(cli: Any) -> None:
    """Add subcommands to the ``studio`` command line (``cli`` is its ``typer.Typer`` app).

    Called when the CLI starts, so keep the plugin module cheap: build the commands here and
    import heavy modules inside the command functions. Example::

        @hookimpl
        def studio_register_commands(cli):
            app = typer.Typer(help="Tools of my plugin.")

            @app.command()
            def train(steps: int = 100) -> None:
                from my_plugin.train import main
                main(steps)

            cli.add_typer(app, name="my-plugin")
    """
