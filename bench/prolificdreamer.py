"""ProlificDreamer's training steps vs the guidance alone (CUDA): its three stages, the SDS step
beside them, mixed precision and particles.

The pretrained model is bench/dreamfusion.py's SD-2.1-base-*sized* pipeline (random weights, no
download); the LoRA's base is, by default, a *second* UNet of the same size with SD 2.1's
v-prediction schedule (random weights): two UNets, as the reference's SD-2.1-base + SD-2.1
(``--lora-base shared`` gives the LoRA the pretrained UNet itself: one UNet). Each row is a preset
as shipped (eager, batch 1, its own ``trainer.precision``), in one run:

* ``coarse-64``: ``prolificdreamer`` (stage 1) before the resolution milestone (from step 4000):
  the hash-grid NeRF at 64x64 with 512 samples per ray, float32; VSD (the pretrained UNet with
  CFG, the LoRA UNet, the LoRA's denoising loss) through the VAE at 512x512;
* ``coarse-512``: the same past the milestone 5000 (from step 6000): 512x512 renders;
* ``dreamfusion-sd``: the SDS step beside them: ``dreamfusion-sd`` at its 64x64 (16-mixed, from
  step 5000) on the same pretrained weights;
* ``geometry-512``: ``prolificdreamer-geometry`` (stage 2): DMTet (resolution 128) holding a
  sphere of radius 0.5 (the benchmark has no coarse run to convert), its normal map rasterized at
  512x512 without colour, SDS, normal consistency, Laplacian smoothing;
* ``texture-512``: ``prolificdreamer-texture`` (stage 3): the fixed sphere mesh's hash-grid colours
  at 512x512, VSD;
* ``coarse-{64,512}-{16-mixed,bf16-mixed}``: rows 1 and 2 under those ``trainer.precision``
  (the UNets and the VAE run in float16 under any: ``half_precision_weights``);
* ``coarse-64-k4``: row 1 with ``system.num_particles=4`` (4 NeRFs, one guidance call on their 4
  renders), against 4 x the K=1 step.

``full step`` is the trainer's own step (``Trainer._train_step``: the data module at the step,
autocast and GradScaler of the precision, backward, the preset's fused Adam(W) over the scene and,
with VSD, the LoRA);
``guidance`` the guidance call alone on a fixed random render of the row's size (forward, the sum
of its ``loss_*`` backward); ``render`` the render alone (forward); median ms after warm-up. Peak
VRAM is ``torch.cuda.max_memory_allocated`` over the row (reset per row; the allocator's reserved
peak beside it), next to the reference's published stage-1 figures (about 15 GB at 64x64, 30 GB
at 512x512; fp32, two UNets). Usage: ``python bench/prolificdreamer.py [--quick] [--rows
coarse-64,precision,...] [--lora-base shared]``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from dreamfusion import (
    FIRST_STEP,
    SD21_SCHEDULER,
    SD21_UNET,
    build_sd21_sized,
    random_prompt_output,
)
from timing import interleaved_ms, timed_ms

GIB = 2**30

#: SD 2.1's (768-v) UNet: 2.1-base's architecture and size, 96x96 latents, attention upcast.
SD21_V_UNET = {**SD21_UNET, "sample_size": 96, "upcast_attention": True}
#: The reference's published stage-1 VRAM (threestudio's README), by render size; the shared UNet
#: (``--lora-base shared``) is published for 64x64 only.
REFERENCE_VRAM = {(False, 64): "~15 GB", (False, 512): "~30 GB", (True, 64): "<10 GB"}

STEP_64, STEP_512 = 4000, 6000  # before / after the resolution milestone 5000
MESH = ("system.geometry_convert_from=",)  # DMTet rows: no run to convert, a sphere instead
PRECISIONS = ("16-mixed", "bf16-mixed")


@dataclass(frozen=True)
class Row:
    """A preset with overrides, trained from ``first_step``; ``sphere``: its DMTet grid holds a
    sphere of radius 0.5."""

    preset: str
    first_step: int
    overrides: tuple[str, ...] = ()
    sphere: bool = False


def precision_rows() -> dict[str, Row]:
    """Rows 1 and 2 under each of :data:`PRECISIONS`."""
    return {
        f"coarse-{size}-{precision}": Row(
            "prolificdreamer", step, (f"trainer.precision={precision}",)
        )
        for size, step in ((64, STEP_64), (512, STEP_512))
        for precision in PRECISIONS
    }


ROWS: dict[str, Row] = {
    "coarse-64": Row("prolificdreamer", STEP_64),
    "coarse-512": Row("prolificdreamer", STEP_512),
    "dreamfusion-sd": Row("dreamfusion-sd", FIRST_STEP),
    "geometry-512": Row("prolificdreamer-geometry", 100, MESH, sphere=True),
    "texture-512": Row("prolificdreamer-texture", 100, MESH, sphere=True),
    **precision_rows(),
    "coarse-64-k4": Row("prolificdreamer", STEP_64, ("system.num_particles=4",)),
}
#: ``--rows`` shorthands; ``particles`` brings its K=1 baseline.
GROUPS = {
    "all": list(ROWS),
    "stages": ["coarse-64", "coarse-512", "dreamfusion-sd", "geometry-512", "texture-512"],
    "precision": ["coarse-64", "coarse-512", *precision_rows()],
    "particles": ["coarse-64", "coarse-64-k4"],
}


def select_rows(spec: str) -> list[str]:
    """Row names of a comma-separated ``--rows`` value (names or :data:`GROUPS`), in table order;
    the K=4 row brings ``coarse-64`` (its baseline). ``ValueError`` on an unknown name."""
    wanted: set[str] = set()
    for name in filter(None, (part.strip() for part in spec.split(","))):
        if name not in ROWS and name not in GROUPS:
            choices = ", ".join([*GROUPS, *ROWS])
            raise ValueError(f"unknown row {name!r}; choose from {choices}")
        wanted.update(GROUPS.get(name, [name]))
    if "coarse-64-k4" in wanted:
        wanted.add("coarse-64")
    return [name for name in ROWS if name in wanted]


# -- the models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPaths:
    """Local folders of the pretrained pipeline and of the LoRA's base model."""

    pretrained: Path
    lora_base: Path

    @property
    def shared(self) -> bool:
        """One UNet serves both (the guidance's single-model mode)."""
        return self.lora_base == self.pretrained


def build_lora_base(folder: Path, unet_config: dict = SD21_V_UNET, device: str = "cuda") -> Path:
    """Save a random-weight float16 UNet of ``unet_config`` and SD 2.1's v-prediction scheduler:
    what the guidance loads of ``pretrained_model_name_or_path_lora``."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(1)  # other weights than the pretrained UNet's
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_config).half()
    unet.save_pretrained(folder / "unet")
    del unet
    DDIMScheduler(**SD21_SCHEDULER, prediction_type="v_prediction").save_pretrained(
        folder / "scheduler"
    )
    return folder


def build_models(root: Path, lora_base: str) -> ModelPaths:
    """The SD-2.1-base-sized pipeline under ``root``, and the LoRA's base: a separate SD-2.1-sized
    v-prediction UNet (``separate``) or the pretrained one (``shared``)."""
    pretrained = build_sd21_sized(root / "sd21-base")
    if lora_base == "shared":
        return ModelPaths(pretrained, pretrained)
    return ModelPaths(pretrained, build_lora_base(root / "sd21-v"))


def describe_lora_base(models: ModelPaths) -> str:
    if models.shared:
        return "the pretrained UNet itself (one UNet, adapters off for the pretrained pass)"
    return "a second SD-2.1-sized UNet, v-prediction (two UNets, as the reference)"


# -- one row ----------------------------------------------------------------------------------


def row_experiment(row: Row, extra: Sequence[str] = ()) -> Any:
    """The row's resolved experiment (``extra`` overrides last)."""
    from studio.config.resolve import load_experiment

    overrides = [*row.overrides, *extra]
    return load_experiment(row.preset, overrides, prompt="a bench").experiment


def make_guidance(experiment: Any, models: ModelPaths, device: torch.device) -> Any:
    """The preset's guidance from its own config block, its model paths on ``models``."""
    from studio.registry import get_registry

    system = experiment.system
    cfg = {**system["guidance"], "pretrained_model_name_or_path": str(models.pretrained)}
    if "pretrained_model_name_or_path_lora" in cfg:
        cfg["pretrained_model_name_or_path_lora"] = str(models.lora_base)
    cls = get_registry().load("guidance", system["guidance_type"])
    return cls(cfg, config_path="system.guidance", device=device)


def fill_sphere(system: Any, radius: float = 0.5) -> None:
    """Every particle's DMTet grid holds the sphere of ``radius`` (SDF ``|x| - radius``)."""
    for particle in system.particle_indices():
        with system.use_particle(particle), torch.no_grad():
            geometry = system.geometry
            geometry.sdf.copy_(geometry.grid_points().norm(dim=-1, keepdim=True) - radius)


def make_system(experiment: Any, guidance: Any, prompt_utils: Any, device: torch.device) -> Any:
    """The method's system as the trainer builds it, with ``guidance`` and ``prompt_utils``
    handed in (no prompt processor: the embeddings are random)."""
    from studio.registry import get_registry, import_target

    system_cls = import_target(get_registry().get("method", experiment.method))
    system = system_cls(experiment.system, device=device).to(device)
    system.guidance, system.prompt_utils = guidance, prompt_utils
    return system


def make_trainer(experiment: Any, system: Any, device: torch.device) -> Any:
    """A :class:`Trainer` holding ``system``, its data module, the precision's autocast and
    scaler, optimizer and scheduler: what ``Trainer.fit`` has before its first step."""
    from studio.registry import get_registry
    from studio.training.optim import build_optimizer, build_scheduler
    from studio.training.trainer import Trainer

    trainer = Trainer(None, experiment, log=lambda message: None)
    trainer.device, trainer.system = device, system
    data_cls = get_registry().load("data", experiment.data_type)
    trainer.data = data_cls(experiment.data, device=device, config_path="data")
    trainer._configure_precision()
    trainer.optimizer = build_optimizer(system, system.cfg.optimizer)
    trainer.scheduler = build_scheduler(
        trainer.optimizer, system.cfg.scheduler, max_steps=experiment.trainer.max_steps
    )
    system.train()
    return trainer


def full_step_of(trainer: Any, first_step: int) -> Callable[[], None]:
    """The trainer's training step from ``first_step`` on; each call advances the step."""
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    trainer._set_step(first_step)

    def full_step() -> None:
        trainer._train_step(params)
        trainer._set_step(trainer.global_step + 1)

    return full_step


def guidance_only_of(trainer: Any, batch: dict[str, Any]) -> Callable[[], None]:
    """The guidance alone as the step calls it, on a fixed random render of ``batch``'s size
    (one per particle): forward under the precision's autocast, the sum of ``loss_*`` backward."""
    from studio_prolificdreamer.system import repeat_batch

    system, data = trainer.system, trainer.data
    cameras = repeat_batch(batch, system.cfg.num_particles)
    shape = (cameras["c2w"].shape[0], data.height, data.width, 3)
    render = torch.rand(*shape, device=trainer.device, requires_grad=True)

    def guidance_only() -> None:
        with trainer.autocast():
            out = system.guidance(render, system.prompt_utils, **cameras, rgb_as_latents=False)
        sum(value for name, value in out.items() if name.startswith("loss_")).backward()
        trainer.optimizer.zero_grad(set_to_none=True)  # the LoRA's gradients
        render.grad = None

    return guidance_only


def render_only_of(trainer: Any, batch: dict[str, Any]) -> Callable[[], None]:
    """Every particle's render of ``batch`` (forward, under the precision's autocast)."""
    system = trainer.system
    # a system that renders its own way (ProlificDreamer's geometry stage: no colour) says so
    render = getattr(system, "render", None) or (lambda b: system.renderer(**b))

    def render_only() -> None:
        with trainer.autocast():
            for particle in system.particle_indices():
                with system.use_particle(particle):
                    render(batch)

    return render_only


@dataclass
class Harness:
    """One row, built and ready to time."""

    trainer: Any
    step: Callable[[], None]
    guidance_only: Callable[[], None]
    render_only: Callable[[], None]
    size: str
    info: dict[str, Any] = field(default_factory=dict)


def build_harness(
    row: Row,
    models: ModelPaths,
    device: torch.device,
    prompt_width: int = 1024,
    extra: Sequence[str] = (),
) -> Harness:
    """Build ``row`` on ``device`` (guidance from ``models``, random prompt embeddings of
    ``prompt_width``, ``extra`` overrides): its step, guidance alone and render alone."""
    from studio.training.trainer import seed_everything
    from studio.training.transfer import to_device

    experiment = row_experiment(row, extra)
    seed_everything(experiment.seed)  # as Trainer.setup (particle k is seeded from it)
    guidance = make_guidance(experiment, models, device)
    system = make_system(experiment, guidance, random_prompt_output(device, prompt_width), device)
    if row.sphere:
        fill_sphere(system)
    trainer = make_trainer(experiment, system, device)
    step = full_step_of(trainer, row.first_step)
    trainer.data.do_update_step(0, row.first_step)
    batch = to_device(trainer.data.train_batch(), device)
    count, data = system.cfg.num_particles, trainer.data
    size = f"{data.width}x{data.height}" + (f" x{count}" if count > 1 else "")
    info = {"precision": experiment.trainer.precision, "particles": count}
    return Harness(
        trainer, step, guidance_only_of(trainer, batch), render_only_of(trainer, batch), size, info
    )


def measure(harness: Harness, warmup: int, iters: int) -> dict[str, float]:
    """Median ms of the guidance alone and the full step (interleaved) and of the render alone,
    after ``warmup`` calls each; peak VRAM (allocated, reserved) in GiB since the row began."""
    device = harness.trainer.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device) / GIB
    for _ in range(warmup):
        harness.guidance_only()
    for _ in range(warmup):
        harness.step()
    fns = {"guidance": harness.guidance_only, "full": harness.step}
    timed = interleaved_ms(fns, device, 0, iters)
    render = timed_ms(harness.render_only, device, min(warmup, 3), iters)
    return {
        **timed,
        "render": render,
        "resident": resident,
        "peak": torch.cuda.max_memory_allocated(device) / GIB,
        "reserved": torch.cuda.max_memory_reserved(device) / GIB,
    }


def bench_row(name: str, models: ModelPaths, warmup: int, iters: int) -> dict[str, Any]:
    """Build, measure and free one row (CUDA)."""
    harness = build_harness(ROWS[name], models, torch.device("cuda"))
    result = {**measure(harness, warmup, iters), **harness.info, "size": harness.size}
    del harness
    gc.collect()
    torch.cuda.empty_cache()
    return result


# -- output -----------------------------------------------------------------------------------


def reference_vram(name: str, shared: bool) -> str:
    """The reference's published figure for a stage-1 row (K=1), else empty."""
    row = ROWS[name]
    if row.preset != "prolificdreamer" or "num_particles" in " ".join(row.overrides):
        return ""
    size = 64 if row.first_step < 5000 else 512
    return REFERENCE_VRAM.get((shared, size), "")


def print_tables(
    results: dict[str, dict[str, Any]], models: ModelPaths, iters: int, device: str
) -> None:
    """The markdown table of every row, stage 1 by precision, then the particles' ratio."""
    print(
        f"\nProlificDreamer steps on {device} (eager, batch 1, median ms, "
        f"{iters} iters; LoRA base: {describe_lora_base(models)})"
    )
    print(
        "| row | render size | precision | render | guidance alone | full step | "
        "full / guidance | peak VRAM | peak reserved | reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['size']} | {r['precision']} | {r['render']:.1f} | "
            f"{r['guidance']:.1f} | {r['full']:.1f} | {r['full'] / r['guidance']:.2f} | "
            f"{r['peak']:.2f} GiB | {r['reserved']:.2f} GiB | "
            f"{reference_vram(name, models.shared)} |"
        )
    print_precision_table(results, models.shared)
    one, four = results.get("coarse-64"), results.get("coarse-64-k4")
    if one and four:
        ratio = four["full"] / (4 * one["full"])
        print(
            f"\nparticles: K=4 step {four['full']:.1f} ms = {ratio:.2f} x (4 x the K=1 step "
            f"{one['full']:.1f} ms); peak {four['peak']:.2f} GiB vs {one['peak']:.2f} GiB"
        )
    print(
        "\nreference: threestudio's README, stage 1 at precision 32 (how it measured is not said; "
        "a process's whole GPU memory is nearer the reserved peak plus the CUDA context)"
    )


def print_precision_table(results: dict[str, dict[str, Any]], shared: bool) -> None:
    """Stage 1's full step and peak VRAM by ``trainer.precision``, beside the reference's VRAM
    (when a precision row was measured)."""
    if not any(name in results for name in precision_rows()):
        return
    print("\nstage 1 by trainer.precision (full step ms / peak VRAM allocated)")
    print("| render size | 32 (shipped) | 16-mixed | bf16-mixed | reference (32) |")
    print("|---|---|---|---|---|")
    for size in (64, 512):
        cells = []
        for name in (f"coarse-{size}", *(f"coarse-{size}-{p}" for p in PRECISIONS)):
            r = results.get(name)
            cells.append(f"{r['full']:.1f} ms / {r['peak']:.2f} GiB" if r else "-")
        reference = REFERENCE_VRAM.get((shared, size), "")
        print(f"| {size}x{size} | {' | '.join(cells)} | {reference} |")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument(
        "--rows",
        default="all",
        help=f"comma-separated rows or groups ({', '.join(GROUPS)}); rows: {', '.join(ROWS)}",
    )
    parser.add_argument(
        "--lora-base",
        choices=("separate", "shared"),
        default="separate",
        help="the LoRA's base: a second v-prediction UNet (the reference) or the pretrained one",
    )
    args = parser.parse_args(argv)
    try:
        args.rows = select_rows(args.rows)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/prolificdreamer.py: needs CUDA (full-sized UNets); skipped.")
        return 0
    warmup, iters = (3, 10) if args.quick else (8, 30)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.lora_base)
        torch.cuda.empty_cache()
        for name in args.rows:
            results[name] = bench_row(name, models, warmup, iters)
            print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    print_tables(results, models, iters, torch.cuda.get_device_name())
    return 0


if __name__ == "__main__":
    sys.exit(main())
