"""DreamFusion training step vs the guidance alone (CUDA), for dreamfusion-sd and dreamfusion-if.

Builds an SD-2.1-base-*sized* pipeline with random weights from the published architecture
(UNet 865M parameters, VAE, DDIM schedule; no download), then measures in one run:

* ``guidance``: the guidance call on a 64x64 render (resize to 512, VAE encode forward+backward,
  UNet forward with classifier-free guidance) -- the floor a DreamFusion step cannot go below;
* ``full step``: the ``dreamfusion-sd`` preset's whole training step (NeRF render at 64x64, 512
  samples per ray, guidance, regularisers, backward, Adam step) under 16-mixed autocast;

for batch 1 and 4, eagerly and with the guidance option ``compile=reduce-overhead`` (torch.compile
+ CUDA graphs) and channels-last. Prints a table of median ms per iteration, the full/guidance
ratio, the compile speed-up and peak VRAM. Usage: ``python bench/dreamfusion.py [--quick]``.

``--guidance if`` measures the ``dreamfusion-if`` preset instead, eagerly at its batch size 1: an
IF-I-XL-*sized* stage-I UNet (about 4.3B parameters, random fp16 weights, built from the published
``unet/config.json`` of ``DeepFloyd/IF-I-XL-v1.0``) and IF's scheduler; its main number is the
peak VRAM of the training step (the T5-XXL text encoder is not part of a step: embeddings are
computed once, cached and the encoder freed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import interleaved_ms, timed_ms

SD21_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
)
SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=512,
)
#: The DDIM schedule both SD 2.1 models ship (2.1 adds ``prediction_type: v_prediction``).
SD21_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)

#: DeepFloyd IF-I-XL-v1.0's stage-I UNet (its published diffusers ``unet/config.json``; keys left
#: at the diffusers defaults are omitted).
IF_I_XL_UNET = dict(
    sample_size=64,
    in_channels=3,
    out_channels=6,
    down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
    up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    block_out_channels=(704, 1408, 2112, 2816),
    layers_per_block=3,
    attention_head_dim=64,
    cross_attention_dim=2816,
    cross_attention_norm="group_norm",
    encoder_hid_dim=4096,
    encoder_hid_dim_type="text_proj",
    addition_embed_type="text",
    addition_embed_type_num_heads=64,
    act_fn="gelu",
    resnet_time_scale_shift="scale_shift",
    norm_num_groups=32,
    only_cross_attention=False,
    upcast_attention=False,
    use_linear_projection=False,
)


def write_model_index(folder: Path, pipeline: str, components: dict[str, str]) -> None:
    """``model_index.json`` of a pipeline holding ``components`` (name -> class), others absent."""
    import json

    index: dict[str, object] = {"_class_name": pipeline, "_diffusers_version": "0.27.0"}
    for name in ("unet", "vae", "scheduler", "text_encoder", "tokenizer"):
        index[name] = ["diffusers", components[name]] if name in components else [None, None]
    index.update(
        safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False
    )
    if pipeline == "IFPipeline":
        index["watermarker"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))


def build_if_xl_sized(folder: Path) -> Path:
    """Save a random-weight stage-I pipeline with IF-I-XL's UNet and IF's scheduler."""
    from diffusers import UNet2DConditionModel

    from studio_primitives.models.architectures import if_scheduler

    torch.manual_seed(0)
    with torch.device("cuda"):
        unet = UNet2DConditionModel(**IF_I_XL_UNET).half()
    unet.save_pretrained(folder / "unet")
    del unet
    if_scheduler().save_pretrained(folder / "scheduler")
    write_model_index(
        folder, "IFPipeline", {"unet": "UNet2DConditionModel", "scheduler": "DDPMScheduler"}
    )
    return folder


def build_sd21_sized(folder: Path) -> Path:
    """Save a random-weight pipeline with SD 2.1-base's UNet/VAE/scheduler architecture."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device("cuda"):
        unet = UNet2DConditionModel(**SD21_UNET).half()
        vae = AutoencoderKL(**SD_VAE).half()
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    DDIMScheduler(**SD21_SCHEDULER).save_pretrained(folder / "scheduler")
    write_model_index(
        folder,
        "StableDiffusionPipeline",
        {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "scheduler": "DDIMScheduler"},
    )
    return folder


def random_prompt_output(device: torch.device, width: int = 1024):
    """Prompt embeddings ``[77, width]`` (SD 2.1: 1024, IF's T5-XXL: 4096); the text encoder runs
    once per run."""
    from studio_dreamfusion.prompts.output import PromptProcessorOutput
    from studio_dreamfusion.prompts.views import ViewThresholds, build_directions

    directions = build_directions("a bench", "", ViewThresholds())
    emb = lambda *s: torch.randn(*s, 77, width, device=device)  # noqa: E731
    return PromptProcessorOutput(
        text_embeddings=emb(),
        uncond_text_embeddings=emb(),
        text_embeddings_vd=emb(4),
        uncond_text_embeddings_vd=emb(4),
        directions=directions,
        direction2idx={d.name: i for i, d in enumerate(directions)},
        prompt="a bench",
        prompts_vd=[d.prompt for d in directions],
    )


def make_guidance(path: Path, compile_mode: str, channels_last: bool, kind: str = "sd"):
    from studio_dreamfusion.guidance.deep_floyd import DeepFloydGuidance
    from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance

    cls = StableDiffusionGuidance if kind == "sd" else DeepFloydGuidance
    return cls(
        {
            "pretrained_model_name_or_path": str(path),
            "compile": compile_mode,
            "enable_channels_last_format": channels_last,
        },
        device=torch.device("cuda"),
    )


def make_system(
    guidance,
    prompt_utils,
    batch_size: int,
    foreach_adam: bool = False,
    preset: str = "dreamfusion-sd",
):
    from studio.config.resolve import load_experiment
    from studio.data.random_camera import RandomCameraDataModule
    from studio.training.optim import build_optimizer
    from studio_dreamfusion.system import DreamFusionSystem

    experiment = load_experiment(preset, [], prompt="a bench").experiment
    system_cfg = dict(experiment.system)
    for key in ("prompt_processor", "guidance"):  # the guidance is handed in, already built
        system_cfg.pop(key)
        system_cfg[f"{key}_type"] = ""
    if foreach_adam:  # the multi-tensor Adam (studio's default on CUDA is the fused one)
        optimizer_cfg = system_cfg["optimizer"]
        system_cfg["optimizer"] = {
            **optimizer_cfg,
            "args": {**optimizer_cfg["args"], "foreach": True},
        }
    system = DreamFusionSystem(system_cfg).cuda()
    system.guidance, system.prompt_utils = guidance, prompt_utils
    data = RandomCameraDataModule(
        {**experiment.data, "batch_size": batch_size}, device=torch.device("cuda")
    )
    optimizer = build_optimizer(system, system.cfg.optimizer)
    return system, data, optimizer


#: The step the benches start at: past the warm-ups (all hash-grid levels on, diffuse shading).
FIRST_STEP = 5000


def guidance_only_of(guidance, prompt_utils, batch: int) -> Callable[[], None]:
    """The guidance alone: forward + backward on a fixed random ``[batch, 64, 64, 3]`` render."""
    cams = {
        "elevation": torch.full((batch,), 10.0, device="cuda"),
        "azimuth": torch.zeros(batch, device="cuda"),
        "camera_distances": torch.full((batch,), 1.8, device="cuda"),
    }
    render = torch.rand(batch, 64, 64, 3, device="cuda", requires_grad=True)

    def guidance_only() -> None:
        guidance(render, prompt_utils, **cams)["loss_sds"].backward()

    return guidance_only


def autocast_guidance_only(
    guidance, prompt_utils, render: torch.Tensor, camera_distance: float, **kwargs: Any
) -> Callable[[], None]:
    """The guidance alone as a method's step calls it: forward under 16-mixed autocast on the
    fixed ``render [1, H, W, C]`` (seen from elevation 10, azimuth 0, ``camera_distance``; more
    guidance arguments in ``kwargs``, e.g. ``rgb_as_latents``), then ``loss_sds`` backward."""
    cams = {
        "elevation": torch.full((1,), 10.0, device="cuda"),
        "azimuth": torch.zeros(1, device="cuda"),
        "camera_distances": torch.full((1,), camera_distance, device="cuda"),
    }

    def guidance_only() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            loss = guidance(render, prompt_utils, **cams, **kwargs)["loss_sds"]
        loss.backward()

    return guidance_only


def full_step_of(system, data, optimizer, scaler, step: list[int]) -> Callable[[], torch.Tensor]:
    """The full training step as the trainer runs it (batch to the GPU, update step, 16-mixed
    autocast forward, scaled backward, optimizer); each call advances ``step[0]`` and returns
    the step's loss (detached, on the device)."""
    from studio.training.trainer import to_device

    cuda = torch.device("cuda")

    def full_step() -> torch.Tensor:
        batch_data = to_device(data.train_batch(), cuda)
        system.do_update_step(0, step[0])
        system.global_step = step[0]
        with torch.autocast("cuda", dtype=torch.float16):
            loss = system.training_step(batch_data)["loss"]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step[0] += 1
        return loss.detach()

    return full_step


def method_system(system_cls, preset: str, guidance, prompt_utils, overrides=()):
    """``(system, data, optimizer)`` of a method's preset on CUDA with ``guidance`` (already
    built) handed in instead of the preset's own guidance and prompt processor."""
    from studio.config.resolve import load_experiment
    from studio.data.random_camera import RandomCameraDataModule
    from studio.training.optim import build_optimizer

    experiment = load_experiment(preset, list(overrides), prompt="a bench").experiment
    system_cfg = dict(experiment.system)
    for key in ("prompt_processor", "guidance"):
        system_cfg.pop(key)
        system_cfg[f"{key}_type"] = ""
    system = system_cls(system_cfg).cuda()
    system.guidance, system.prompt_utils = guidance, prompt_utils
    data = RandomCameraDataModule(experiment.data, device=torch.device("cuda"))
    return system, data, build_optimizer(system, system.cfg.optimizer)


def step_vs_guidance(
    system, data, optimizer, guidance_only: Callable[[], None], first_step: int, iters: int
) -> dict[str, float]:
    """A method's whole training step against its guidance alone, interleaved (CUDA):
    ``{"guidance", "full", "render"}`` in median ms and ``"peak"`` VRAM of the full step in GiB.
    Both are warmed up 8 times first; the full step starts at ``first_step``."""
    from studio.training.trainer import to_device

    cuda = torch.device("cuda")
    full_step = full_step_of(system, data, optimizer, torch.amp.GradScaler("cuda"), [first_step])
    for _ in range(8):
        guidance_only()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(8):
        full_step()
    timed = interleaved_ms({"guidance": guidance_only, "full": full_step}, cuda, 0, iters)
    peak = torch.cuda.max_memory_allocated() / 2**30

    # a system that renders its own way (Fantasia3D's geometry stage: no colour) says so
    render = getattr(system, "render", None) or (lambda batch: system.renderer(**batch))

    def render_only() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            render(to_device(data.train_batch(), cuda))

    return {**timed, "render": timed_ms(render_only, cuda, 3, iters), "peak": peak}


def method_steps_main(
    script: str, title: str, presets: Any, bench_preset: Callable[[Path, Any, int], dict]
) -> int:
    """``main()`` of a method's step bench: ``--quick`` (10 iterations, else 30), then
    ``bench_preset(sd21_sized_path, preset, iters)`` for each preset and one markdown row each
    (render, guidance alone, full step, their ratio, peak VRAM). Without CUDA: skipped, 0."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"bench/{script}: needs CUDA (full-sized UNet); skipped.")
        return 0
    iters = 10 if args.quick else 30
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        for preset in presets:
            torch.cuda.empty_cache()
            rows[preset] = bench_preset(path, preset, iters)
            print(f"{preset}: {rows[preset]}", file=sys.stderr, flush=True)
    device = torch.cuda.get_device_name()
    print(f"\n{title} on {device} (eager, batch 1, median ms, {iters} iters)")
    print("| preset | render | guidance alone | full step | full / guidance | peak VRAM |")
    print("|---|---|---|---|---|---|")
    for preset, r in rows.items():
        print(
            f"| {preset} | {r['render']:.1f} | {r['guidance']:.1f} | {r['full']:.1f} | "
            f"{r['full'] / r['guidance']:.2f} | {r['peak']:.2f} GiB |"
        )
    return 0


def bench(
    path: Path,
    batch: int,
    compile_mode: str,
    channels_last: bool,
    foreach_adam: bool,
    iters: int,
    kind: str = "sd",
    return_step: bool = False,
    fixed_capacity: bool = False,
) -> Any:
    from studio.training.trainer import to_device

    cuda = torch.device("cuda")

    guidance = make_guidance(path, compile_mode, channels_last, kind)
    prompt_utils = random_prompt_output(cuda, 1024 if kind == "sd" else 4096)
    guidance_only = guidance_only_of(guidance, prompt_utils, batch)
    preset = "dreamfusion-sd" if kind == "sd" else "dreamfusion-if"
    system, data, optimizer = make_system(guidance, prompt_utils, batch, foreach_adam, preset)
    system.renderer.cfg.fixed_capacity = fixed_capacity
    scaler = torch.amp.GradScaler("cuda")
    step = [FIRST_STEP]
    full_step = full_step_of(system, data, optimizer, scaler, step)

    def render_only():
        batch_data = to_device(data.train_batch(), cuda)
        system.do_update_step(0, step[0])
        with torch.autocast("cuda", dtype=torch.float16):
            out = system.renderer(**batch_data)
        return out

    def forward_only():
        batch_data = to_device(data.train_batch(), cuda)
        system.do_update_step(0, step[0])
        with torch.autocast("cuda", dtype=torch.float16):
            return system.training_step(batch_data)["loss"]

    def forward_backward():
        scaler.scale(forward_only()).backward()
        optimizer.zero_grad(set_to_none=True)

    if return_step:  # warmed up, for the profiler
        for _ in range(iters):
            full_step()
        return full_step

    warmup = 8 if compile_mode == "none" else 25
    compile_started = time.perf_counter()
    for _ in range(warmup):
        guidance_only()
    first = time.perf_counter() - compile_started
    torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        full_step()
    # Alternating guidance-alone and full-step calls: their ratio does not depend on the host's
    # speed drifting between two separate timing loops (both are launch-bound at batch 1).
    timed = interleaved_ms({"guidance": guidance_only, "full": full_step}, cuda, 0, iters)
    guidance_ms, full_ms = timed["guidance"], timed["full"]
    peak = torch.cuda.max_memory_allocated() / 2**30  # the full step's (the larger of the two)
    parts = {
        "render": timed_ms(render_only, cuda, 3, iters),
        "forward": timed_ms(forward_only, cuda, 3, iters),
        "forward+backward": timed_ms(forward_backward, cuda, 3, iters),
    }
    return {"guidance": guidance_ms, "full": full_ms, "peak": peak, "warm_s": first, **parts}


def profile_step(path: Path, steps: int = 5, fixed_capacity: bool = False) -> None:
    """torch.profiler over eager batch-1 full steps: the ops costing the most host time, how
    many CUDA kernels one step launches, and where it waits for the GPU."""
    from torch.profiler import ProfilerActivity, profile

    full_step = bench(
        path, 1, "none", False, False, iters=3, return_step=True, fixed_capacity=fixed_capacity
    )
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            full_step()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
    print(table, file=sys.stderr)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.device_time for e in kernels) / 1e3 / steps
    print(
        f"profile: {len(kernels) / steps:.0f} CUDA kernels and {busy_ms:.1f} ms of kernel time "
        f"per step",
        file=sys.stderr,
        flush=True,
    )
    # Where one step waits for the GPU (host syncs), as torch's sync debug mode reports them.
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        full_step()
    torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    print(f"profile: {len(syncs)} host syncs per step:", file=sys.stderr)
    for w in syncs:
        print(f"  {w.filename}:{w.lineno}: {str(w.message)[:100]}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--guidance", choices=("sd", "if"), default="sd")
    parser.add_argument(
        "--variants",
        default="eager,eager+foreach-adam,compiled",
        help="comma-separated subset of eager, eager+foreach-adam, compiled, each also with "
        "+fixed (fixed-capacity sample buffers: no host sync in the render)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile 5 eager full steps at batch 1"
    )
    parser.add_argument(
        "--profile-fixed", action="store_true", help="--profile with fixed-capacity marching"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/dreamfusion.py: needs CUDA (full-sized UNets); skipped.")
        return 0
    iters = 10 if args.quick else 30
    if args.guidance == "if":
        return bench_if(iters)
    variants = [
        ("eager", "none", False, False),
        ("compiled", "reduce-overhead", True, False),
        ("eager+foreach-adam", "none", False, True),
    ]
    # `+fixed`: the renderer marches into fixed-capacity buffers (no host sync per step)
    variants += [(f"{v[0]}+fixed", *v[1:]) for v in variants]
    chosen = args.variants.split(",")
    variants = [v for v in variants if v[0] in chosen]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_sd21_sized(Path(tmp))
        torch.cuda.empty_cache()
        if args.profile or args.profile_fixed:
            profile_step(path, fixed_capacity=args.profile_fixed)
        for batch in (1, 4):
            for label, mode, channels_last, foreach_adam in variants:
                torch._dynamo.reset()
                fixed = label.endswith("+fixed")
                result = bench(
                    path, batch, mode, channels_last, foreach_adam, iters, fixed_capacity=fixed
                )
                torch.cuda.empty_cache()
                rows.append((batch, label, result))
                print(f"batch {batch} {label}: {result}", file=sys.stderr, flush=True)
    print(f"\nDreamFusion-SD step on {torch.cuda.get_device_name()} (median ms, {iters} iters)")
    header = "| batch | guidance | guidance alone | full step | full / guidance | peak VRAM |"
    print(header + "\n|---|---|---|---|---|---|")
    for batch, label, r in rows:
        print(
            f"| {batch} | {label} | {r['guidance']:.1f} | {r['full']:.1f} | "
            f"{r['full'] / r['guidance']:.2f} | {r['peak']:.2f} GiB |"
        )
    print("\nwhere a full step goes (median ms): render fwd | step fwd | fwd+bwd | full")
    for batch, label, r in rows:
        print(
            f"batch {batch} {label}: {r['render']:.1f} | {r['forward']:.1f} | "
            f"{r['forward+backward']:.1f} | {r['full']:.1f}"
        )
    for batch in (1, 4):
        eager = next((r for b, lab, r in rows if b == batch and lab == "eager"), None)
        fast = next((r for b, lab, r in rows if b == batch and lab == "compiled"), None)
        if eager is None or fast is None:
            continue
        print(
            f"batch {batch}: compile speed-up guidance x{eager['guidance'] / fast['guidance']:.2f}, "
            f"full step x{eager['full'] / fast['full']:.2f} (compile warm-up {fast['warm_s']:.0f} s)"
        )
    return 0


def bench_if(iters: int) -> int:
    """The ``dreamfusion-if`` preset, eager, batch 1: ms per step and peak VRAM."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = build_if_xl_sized(Path(tmp))
        torch.cuda.empty_cache()
        print(f"built the IF-I-XL-sized pipeline in {time.perf_counter() - started:.0f} s")
        r = bench(path, 1, "none", True, False, iters, kind="if")
    print(f"\nDreamFusion-IF step on {torch.cuda.get_device_name()} (median ms, {iters} iters)")
    print("| batch | guidance alone | full step | full / guidance | peak VRAM (full step) |")
    print("|---|---|---|---|---|")
    print(
        f"| 1 | {r['guidance']:.1f} | {r['full']:.1f} | {r['full'] / r['guidance']:.2f} | "
        f"{r['peak']:.2f} GiB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
