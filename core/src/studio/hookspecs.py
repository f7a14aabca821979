"""Hook specifications: the whole contract between studio and its plugins.

A plugin is a module (or object) exposed through the entry-point group ``studio.plugins``::

    [project.entry-points."studio.plugins"]
    my_plugin = "my_package.plugin"

and implementing any of the hooks below with ``@studio.hookimpl``. Every hook receives a
``register`` callback and calls it once per name it provides. Registrations are *lazy*: they name
an import path ``"package.module:Attribute"`` instead of the object, so listing plugins or showing
``studio --help`` never imports torch or a plugin's heavy modules. The object is imported the first
time a run needs it.

``register(name, target, **details)``

* ``name`` -- the string users write in configs (``geometry_type: implicit-volume``). Names are
  global per kind: two distributions registering the same name is an error naming both.
* ``target`` -- ``"module:attr"`` of the class to build.
* ``details`` -- kind-specific keyword arguments documented per hook (most kinds take none).

Core's own components register through these same hooks (see ``studio.core_plugin``).
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "studio"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[..., None]


@hookspec
def studio_register_geometries(register: Register) -> None:
    """Register geometry classes (``system.geometry_type``).

    A geometry is an ``nn.Module`` (subclass of ``studio.base.BaseModule``) with a nested attrs
    ``Config``. Implicit geometries answer density/SDF and features at points; explicit ones hold a
    mesh. Example: ``register("implicit-volume", "studio_dreamfusion.geometry:ImplicitVolume")``.
    """


@hookspec
def studio_register_materials(register: Register) -> None:
    """Register materials (``system.material_type``): features + shading inputs -> colour.

    Example: ``register("diffuse-with-point-light", "studio_dreamfusion.materials:DiffuseWithPointLight")``.
    """


@hookspec
def studio_register_backgrounds(register: Register) -> None:
    """Register backgrounds (``system.background_type``): ray directions -> colour behind the object."""


@hookspec
def studio_register_renderers(register: Register) -> None:
    """Register renderers (``system.renderer_type``).

    A renderer is built with ``geometry=``, ``material=`` and ``background=`` and turns a camera
    batch into images (``comp_rgb``, ``opacity``, ``depth``, ...).
    """


@hookspec
def studio_register_guidances(register: Register) -> None:
    """Register guidance objects (``system.guidance_type``): images + prompt -> distillation loss.

    Guidance is loaded only when training needs it, never for ``studio test`` or ``studio export``.
    """


@hookspec
def studio_register_prompt_processors(register: Register) -> None:
    """Register prompt processors (``system.prompt_processor_type``): prompt -> text embeddings."""


@hookspec
def studio_register_exporters(register: Register) -> None:
    """Register exporters (``system.exporter_type``) used by ``studio export RUN_DIR``.

    An exporter receives the trained system and returns the files to write (meshes, textures).
    """


@hookspec
def studio_register_evaluators(register: Register) -> None:
    """Register evaluators run by ``studio eval RUN_DIR`` (all registered ones, or those named).

    The target is a callable ``evaluate(context: studio.eval.EvalContext) -> dict[str, Any]``: the
    context holds the run directory, its parsed config, the test step and the rgb columns of the
    run's test frames (``uint8 [H, W, 3]`` each, in orbit order). It returns JSON-ready metrics; an
    evaluator that does not apply to the run (wrong prompt vocabulary, no reference model) returns
    ``{"applicable": False, "reason": "..."}`` instead of raising. Evaluators load no guidance
    model. Example: ``register("primitives-r-precision", "studio_primitives.evaluation:evaluate")``.
    """


@hookspec
def studio_register_models(register: Register) -> None:
    """Register named embedded models: pretrained pipelines a plugin ships inside its package.

    The target is a zero-argument callable returning the local folder (``pathlib.Path``) of a
    diffusers or transformers pipeline saved with ``save_pretrained``. Configs name the model like a
    hub id (``system.guidance.pretrained_model_name_or_path: primitives-sd``) and
    :func:`studio.models.hub.resolve_model` calls the target only then: an existing local folder of
    that name comes first, then registered names, then the hub. By convention a model family
    ``NAME`` registers ``NAME-sd`` (for ``stable-diffusion`` guidance) and ``NAME-if`` (for
    ``deep-floyd``), which ``studio run METHOD model=NAME`` picks from. Example:
    ``register("primitives-sd", "studio_primitives.weights:sd_folder")``.

    Optional detail ``prompt_check="module:function"``: for a model that knows a small vocabulary,
    ``function(prompt, negative_prompt)`` raises ``studio.errors.ConfigError`` (message: what the
    model knows) for a prompt it cannot follow; ``studio run`` calls it while resolving a config
    that names the model, before anything is created.
    """


@hookspec
def studio_register_data_modules(register: Register) -> None:
    """Register data modules (top-level ``data_type``): the cameras (or other batches) a run trains on.

    A data module subclasses ``studio.data.base.DataModule``. Core registers ``random-camera``.
    """


@hookspec
def studio_register_methods(register: Register) -> None:
    """Register methods: what ``studio run METHOD`` runs.

    ``register(name, system, preset=..., description=..., prompt_key=...)``:

    * ``system`` -- ``"module:Class"`` of a ``studio.systems.base.BaseSystem`` subclass.
    * ``preset`` -- ``"package:relative/path.yaml"``, a YAML file shipped as package data holding the
      full experiment config (``name``, ``data_type``, ``data``, ``system``, ``trainer``, ...).
    * ``description`` -- one line shown by ``studio methods``.
    * ``prompt_key`` -- dotted config key that ``prompt=...``/``--prompt`` sets
      (default ``system.prompt_processor.prompt``).
    """
