"""A system made of registered parts: geometry, material, background, renderer (+ guidance).

The parts are named in the config (``geometry_type: implicit-volume`` with its ``geometry:`` block)
and built through the registry, so any plugin's component can be swapped in. A geometry is
required; material, background and renderer are None when their type is left empty (a stage that
fits a geometry alone). Guidance and prompt
processor are built only by :meth:`load_guidance` (called from ``on_fit_start``), never for test or
export.

``geometry_convert_from`` (a run directory, stage directory or checkpoint file) starts the
geometry from another run's (:mod:`studio.geometry.convert`), once, when the run starts from
scratch; ``geometry_convert_inherit_texture`` also takes its texture networks and
``geometry_convert_override`` changes the source geometry's config first (its
``isosurface_threshold``, for example).

Particles. ``num_particles: K`` (systems with ``supports_particles`` only) builds K independent
scenes, each a geometry, material, background and renderer of the same config, particle ``k``'s
from its own seed (:func:`particle_seed`; particle 0's from the run's own stream, so a
one-particle system is built exactly as before). Particle 0 keeps the usual attributes and
checkpoint keys (``geometry.*``); particle ``k >= 1`` lives in ``particles[str(k)]``
(``particles.<k>.geometry.*``). :meth:`use_particle` puts particle ``k``'s parts at the usual
attributes for the length of a block, so code written for one scene (rendering, evaluation
columns, exporters, the automatic isosurface level) serves any particle unchanged; a converted
geometry comes from the source run's particle of the same index. An optimizer group named after
a part (``geometry``, ``material.network``) covers that part of every particle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Optional

import attrs
import torch
from torch import nn

from studio.registry import get_registry
from studio.rundir import particle_folder
from studio.systems.base import BaseSystem


def load_component(kind: str, name: str) -> Any:
    """The class (or callable) registered as ``name`` for ``kind`` (``PluginError`` if none)."""
    return get_registry().load(kind, name)


def build_component(
    kind: str, name: str, cfg: dict[str, Any], config_path: str, **kwargs: Any
) -> Any:
    """Instantiate the ``kind`` registered as ``name`` with its config mapping; ``config_path`` is
    where that mapping lives in the run's config (``system.geometry``), for its messages."""
    cls = get_registry().load(kind, name)
    return cls(cfg, config_path=config_path, **kwargs)


def build_guidance(
    cfg: Any, device: Any, config_path: str = "system"
) -> tuple[Optional[Any], Optional[Any]]:
    """``(prompt processor, guidance)`` from ``cfg``'s ``prompt_processor_type``/``guidance_type``
    and their blocks, each ``None`` when its type is empty."""
    prompt_processor = guidance = None
    if cfg.prompt_processor_type:
        prompt_processor = build_component(
            "prompt_processor",
            cfg.prompt_processor_type,
            cfg.prompt_processor,
            f"{config_path}.prompt_processor",
            device=device,
        )
    if cfg.guidance_type:
        guidance = build_component(
            "guidance", cfg.guidance_type, cfg.guidance, f"{config_path}.guidance", device=device
        )
    return prompt_processor, guidance


#: What one particle (one scene) is made of.
PARTICLE_PARTS = ("geometry", "material", "background", "renderer")


def particle_seed(index: int) -> int:
    """The random seed particle ``index`` >= 1 is built from: derived from the run's seed
    (``torch.initial_seed()``) and the index by NumPy's ``SeedSequence``, so particles of one run
    differ and do not repeat another seed's particles."""
    import numpy as np

    sequence = np.random.SeedSequence([torch.initial_seed() % 2**63, index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] % 2**63)


class Particle(nn.Module):
    """The parts of one extra scene (``None`` where the config leaves a part's type empty)."""

    def __init__(self, parts: dict[str, Optional[nn.Module]]):
        super().__init__()
        for name in PARTICLE_PARTS:
            setattr(self, name, parts[name])


class BaseLift3DSystem(BaseSystem):
    @attrs.define(kw_only=True)
    class Config(BaseSystem.Config):
        geometry_type: str = ""
        """The registered geometry (e.g. ``implicit-volume``); required."""
        geometry: dict[str, Any] = attrs.Factory(dict)
        """The geometry's config (keys of the ``geometry_type``'s config)."""
        geometry_convert_from: Optional[str] = None
        """Start the geometry from another run's (a run or stage directory, or a checkpoint in
        one), once, when this run starts from scratch without ``weights``; None: fresh."""
        geometry_convert_inherit_texture: bool = False
        """With ``geometry_convert_from``: also copy the source's texture (feature) networks."""
        geometry_convert_override: dict[str, Any] = attrs.Factory(dict)
        """With ``geometry_convert_from``: keys merged into the source run's geometry config
        before converting (e.g. ``isosurface_threshold``)."""
        material_type: str = ""
        """The registered material (e.g. ``diffuse-with-point-light``); empty: none."""
        material: dict[str, Any] = attrs.Factory(dict)
        """The material's config (keys of the ``material_type``'s config)."""
        background_type: str = ""
        """The registered background (e.g. ``neural-environment-map``); empty: none."""
        background: dict[str, Any] = attrs.Factory(dict)
        """The background's config (keys of the ``background_type``'s config)."""
        renderer_type: str = ""
        """The registered renderer (e.g. ``nerf-volume``); empty: none."""
        renderer: dict[str, Any] = attrs.Factory(dict)
        """The renderer's config (keys of the ``renderer_type``'s config)."""
        guidance_type: str = ""
        """The registered guidance (e.g. ``stable-diffusion``); built for training only."""
        guidance: dict[str, Any] = attrs.Factory(dict)
        """The guidance's config (keys of the ``guidance_type``'s config)."""
        prompt_processor_type: str = ""
        """The registered prompt processor (e.g. ``stable-diffusion``); built for training only."""
        prompt_processor: dict[str, Any] = attrs.Factory(dict)
        """The prompt processor's config (keys of the ``prompt_processor_type``'s config)."""
        num_particles: int = 1
        """Independent scenes trained together against one guidance (each with its own seed;
        files under ``save/particle-<k>/``); above 1 only where the system supports it."""

    #: Whether :meth:`training_step` trains every particle (``num_particles`` above 1 allowed).
    supports_particles: ClassVar[bool] = False

    @classmethod
    def validate_config(cls, cfg: Any, path: str) -> None:
        super().validate_config(cfg, path)
        from studio.errors import ConfigError

        count = cfg.num_particles
        if count < 1:
            raise ConfigError(
                f"{path}.num_particles={count!r}: give the number of scenes to train, 1 or more."
            )
        if count > 1 and not cls.supports_particles:
            raise ConfigError(
                f"{path}.num_particles={count}: this system ({cls.__name__}) trains one scene; "
                "several particles need a method whose system trains them. Set it to 1."
            )
        if cfg.geometry_convert_from:
            from studio.geometry.convert import check_source, source_particles

            key = f"{path}.geometry_convert_from"
            check_source(cfg.geometry_convert_from, key)
            available = source_particles(cfg.geometry_convert_from, key)
            if cfg.num_particles > available:
                raise ConfigError(
                    f"{path}.num_particles={cfg.num_particles}: {key}="
                    f"{cfg.geometry_convert_from!r} trained {available} particle(s), and each "
                    "particle converts its own. Give a source run with as many particles, or "
                    f"set {path}.num_particles to {available}."
                )

    def configure(self) -> None:
        self.conversion_source: Any = None  # the loaded source run, shared by the particles
        parts = self.build_parts(0)
        self.geometry = parts["geometry"]
        self.material = parts["material"]
        self.background = parts["background"]
        self.renderer = parts["renderer"]
        #: Particle 0's parts (what :meth:`use_particle` puts back).
        self.home_parts = parts
        if self.cfg.num_particles > 1:
            extra = {}
            for index in range(1, self.cfg.num_particles):
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(particle_seed(index))
                    extra[str(index)] = Particle(self.build_parts(index))
            self.particles = nn.ModuleDict(extra)
        self.conversion = self.conversions[0] if self.conversions else None
        self.conversion_source = None
        self.guidance: Optional[Any] = None
        self.prompt_processor: Optional[Any] = None

    def build_parts(self, particle: int) -> dict[str, Any]:
        """Particle ``particle``'s geometry (converted from the source's same particle when the
        run converts), material, background and renderer, by :data:`PARTICLE_PARTS` name."""
        cfg = self.cfg
        geometry = self.build_geometry(particle)
        material = self._optional("material", cfg.material_type, cfg.material)
        background = self._optional("background", cfg.background_type, cfg.background)
        renderer = None
        if cfg.renderer_type:
            renderer = build_component(
                "renderer",
                cfg.renderer_type,
                cfg.renderer,
                f"{self.config_path}.renderer",
                geometry=geometry,
                material=material,
                background=background,
            )
        return {
            "geometry": geometry,
            "material": material,
            "background": background,
            "renderer": renderer,
        }

    # -- particles -------------------------------------------------------------------------------
    def particle_indices(self) -> range:
        return range(self.cfg.num_particles)

    @contextmanager
    def use_particle(self, index: int) -> Iterator[None]:
        """Particle ``index``'s parts at ``geometry``/``material``/``background``/``renderer``
        and its folder as :attr:`save_prefix` inside the block; on leaving it (an exception
        too) whatever was in place before is put back. With one particle the prefix stays
        empty."""
        if index:
            particle = self.particles[str(index)]
            target = {name: getattr(particle, name) for name in PARTICLE_PARTS}
        else:
            target = self.home_parts
        names = [name for name in PARTICLE_PARTS if isinstance(target[name], nn.Module)]
        saved = {name: self._modules[name] for name in names}
        saved_prefix = self.save_prefix
        try:
            for name in names:
                self._modules[name] = target[name]
            if self.cfg.num_particles > 1:
                self.save_prefix = f"{particle_folder(index)}/"
            yield
        finally:
            self._modules.update(saved)
            self.save_prefix = saved_prefix

    def optimizer_targets(self, dotted: str) -> list[Any]:
        """What the optimizer group ``dotted`` names: the attribute, and for a particle part
        (``geometry``, ``material.network``...) the same part of every other particle."""
        from studio.training.optim import resolve_attribute

        targets = [resolve_attribute(self, dotted)]
        if dotted.split(".")[0] in PARTICLE_PARTS and self.cfg.num_particles > 1:
            targets += [resolve_attribute(p, dotted) for p in self.particles.values()]
        return targets

    def _optional(self, kind: str, name: str, cfg: dict[str, Any]) -> Any:
        """The ``kind`` registered as ``name``; None when the config leaves its type empty."""
        if not name:
            return None
        return build_component(kind, name, cfg, f"{self.config_path}.{kind}")

    def build_geometry(self, particle: int = 0) -> Any:
        """The configured geometry, converted from ``geometry_convert_from``'s particle
        ``particle`` when the run starts from scratch without ``weights`` (each conversion is
        recorded in ``self.conversions``; particle 0's is ``self.conversion``)."""
        cfg = self.cfg
        if particle == 0:
            self.conversions: list[Any] = []
        path = f"{self.config_path}.geometry"
        if not cfg.geometry_convert_from or self.resumed or cfg.weights:
            return build_component("geometry", cfg.geometry_type, cfg.geometry, path)
        from studio.geometry.convert import convert_geometry

        if self.conversion_source is None:
            from studio.geometry.convert import load_source_system

            key = f"{self.config_path}.geometry_convert_from"
            self.conversion_source = load_source_system(
                cfg.geometry_convert_from, cfg.geometry_convert_override, self.build_device, key
            )
        geometry, record = convert_geometry(
            get_registry().load("geometry", cfg.geometry_type),
            cfg.geometry,
            source=cfg.geometry_convert_from,
            inherit_texture=cfg.geometry_convert_inherit_texture,
            override=cfg.geometry_convert_override,
            device=self.build_device,
            config_path=path,
            particle=particle,
            loaded=self.conversion_source,
        )
        self.conversions.append(record)
        return geometry

    def load_guidance(self) -> None:
        """Build prompt processor and guidance (heavy: diffusion models) on this system's device."""
        self.prompt_processor, self.guidance = build_guidance(
            self.cfg, self.device, self.config_path
        )

    def on_fit_start(self) -> None:
        self.load_guidance()

    # -- evaluation images ---------------------------------------------------------------------
    def eval_columns(self, batch: dict[str, Any]) -> list[Any]:
        """Grid columns for one evaluation view: rgb | normal (when rendered) | opacity."""
        from studio.io.saver import grayscale, rgb

        out = self.renderer(**batch)
        columns = [rgb(out["comp_rgb"][0])]
        if "comp_normal" in out:
            columns.append(rgb(out["comp_normal"][0]))
        columns.append(grayscale(out["opacity"][0]))
        return columns

    def validation_step(self, batch: dict[str, Any], index: int) -> None:
        self.saver.image_grid(self.validation_image_name(index), self.eval_columns(batch))

    def test_step(self, batch: dict[str, Any], index: int) -> None:
        self.saver.image_grid(self.test_image_name(index), self.eval_columns(batch))
