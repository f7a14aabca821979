"""The Stable Diffusion guidance's two heavy parts alone: GPU time, TFLOP/s and % of peak (CUDA).

Builds SD-2.1-base-*sized* models with random weights (bench/dreamfusion.py's ``SD21_UNET`` and
``SD_VAE``; no download) and measures each part by itself, as the ``stable-diffusion`` guidance
runs it (frozen weights, eval mode, the weights dtype, autocast off):

* ``unet``: the UNet forward of a classifier-free-guidance pair under ``torch.no_grad`` (SDS does
  not backpropagate through the UNet): latents ``[2, 4, 64, 64]``, timesteps ``[2]`` (long),
  ``encoder_hidden_states`` ``[2, 77, 1024]``; compiled as the guidance compiles it,
  ``torch.compile(unet, mode=..., dynamic=False)``.
* ``vae``: the VAE encode of one 512x512 image with its backward to the image:
  ``vae.encode(x).latent_dist.sample() * scaling_factor`` (encoder + quant_conv + the posterior
  sample) for ``x`` ``[1, 3, 512, 512]`` requiring grad, then ``backward`` of
  ``(latents * g).sum()`` with a fixed random ``g`` (to ``x.grad``); compiled as the guidance
  compiles it: only ``vae.encoder``, ``torch.compile(vae.encoder, mode=..., dynamic=False)``.

Variants are ``DTYPE-MODE`` strings (``--variants``, comma-separated): ``DTYPE`` one of fp16,
bf16, fp32; ``MODE`` one of eager, default, reduce-overhead, max-autotune,
max-autotune-no-cudagraphs (reduce-overhead and max-autotune, the CUDA-graph modes, apply to the
UNet only: the VAE runs under autograd; a variant a part does not take is skipped for that part).
Each runs for every part of ``--parts`` and every attention choice of ``--sdpa`` (default:
PyTorch's own choice; flash, efficient, math, cudnn force one through
``torch.nn.attention.sdpa_kernel``, and a kernel that cannot run the shapes fails that variant).
Both models are in ``channels_last`` by default (``--no-channels-last`` to compare; the guidance
itself converts only the UNet, with ``enable_channels_last_format``); inputs are laid out as the
guidance passes them: the UNet's latents contiguous, the VAE's image with channels-last strides
(the guidance permutes a ``[B, H, W, 3]`` render to ``[B, 3, H, W]``, and the resize and cast
keep that layout).

Per variant: median GPU ms per call by CUDA events (``--iters`` calls queued back to back after
``--warmup`` calls, the first of which compiles), TFLOP/s = FLOPs / time and its % of
``--peak-tflops`` (default 989.4: H100 SXM dense fp16/bf16 tensor-core peak; fp32 variants are
still compared to it), peak memory allocated during the timed calls, the first call's wall time
(the compile) and the attention kernel the eager model runs (seen by a dispatch mode). FLOPs are
counted once per part and dtype by ``torch.utils.flop_counter.FlopCounterMode`` on the eager model
(forward for ``unet``, forward + backward for ``vae``) with the math attention backend, so that
they are the model's FLOPs whatever kernel runs (no recomputation counted). A variant that fails
(compile error, out of memory, no attention kernel) prints one line and the run goes on.

Usage (CUDA; default: every part, fp16 and bf16, every mode)::

    python bench/guidance_kernels.py [--parts unet,vae] [--variants bf16-eager,bf16-default]
        [--sdpa default,flash] [--no-channels-last] [--iters 50] [--warmup 10]
        [--peak-tflops 989.4] [--json out.json]

``max-autotune`` compiles of the UNet take minutes each: run them in calls of their own. The
markdown table on stdout (one row per variant: median ms, TFLOP/s, % of peak, peak memory) is
what goes into docs/performance.md, with the command line and the device; ``--json PATH``
rewrites a list of records after each variant, so a run cut short keeps what it measured.

``--tiny`` swaps in a tiny UNet and VAE (64x64 images) and runs anywhere, timing on the CPU by
``time.perf_counter``; on the CPU the default variants are ``fp32-eager,fp32-default``, e.g.
``python bench/guidance_kernels.py --tiny --variants fp32-eager --iters 2 --warmup 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import torch
from dreamfusion import SD21_UNET, SD_VAE
from timing import timed_ms
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
#: torch.compile modes per part ("eager": not compiled); CUDA-graph modes only for the UNet.
MODES = {
    "unet": (
        "eager",
        "default",
        "reduce-overhead",
        "max-autotune",
        "max-autotune-no-cudagraphs",
    ),
    "vae": ("eager", "default", "max-autotune-no-cudagraphs"),
}
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
SDPA_BACKENDS = {
    "default": None,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
#: aten ops of the fused attention kernels -> the name reported.
FUSED_ATTENTION_OPS = {
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_flash_attention_for_cpu": "flash-cpu",
    "_scaled_dot_product_efficient_attention": "efficient",
    "_scaled_dot_product_cudnn_attention": "cudnn",
    "_scaled_dot_product_fused_attention_overrideable": "overrideable",
}

TINY_UNET = {
    **SD21_UNET,
    "sample_size": 32,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
TINY_VAE = {
    **SD_VAE,
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}


@dataclass(frozen=True)
class Shapes:
    """Input sizes: UNet latent side, text tokens and width, VAE image side."""

    latent: int
    text_width: int
    image: int
    text_tokens: int = 77


FULL_SHAPES = Shapes(latent=64, text_width=1024, image=512)
TINY_SHAPES = Shapes(latent=32, text_width=32, image=64)


@dataclass(frozen=True)
class Variant:
    """One measured configuration of one part."""

    part: str
    dtype: str
    mode: str
    channels_last: bool
    sdpa: str

    @property
    def label(self) -> str:
        layout = "cl" if self.channels_last else "nchw"
        return f"{self.part} {self.dtype}-{self.mode} {layout} sdpa={self.sdpa}"


@dataclass
class Record:
    """One JSON record: a variant's numbers, or ``error`` (and no numbers) when it failed."""

    part: str
    dtype: str
    mode: str
    channels_last: bool
    sdpa: str
    sdpa_backend: Optional[str] = None
    median_ms: Optional[float] = None
    tflops: Optional[float] = None
    peak_pct: Optional[float] = None
    flops: Optional[int] = None
    peak_mem_gib: Optional[float] = None
    first_call_s: Optional[float] = None
    device: str = ""
    error: Optional[str] = None


class Part(Protocol):
    """A measured part: built eagerly; ``compile`` swaps in the compiled module; a call runs it."""

    def compile(self, mode: str) -> None: ...

    def __call__(self) -> Optional[torch.Tensor]: ...


def prepared(model: torch.nn.Module, dtype: torch.dtype, channels_last: bool) -> Any:
    """``model`` frozen (eval, no parameter grads) in ``dtype``, channels-last if asked."""
    model = model.to(dtype).eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


class UNetPart:
    """The UNet forward of a classifier-free-guidance pair (batch 2) under ``no_grad``."""

    def __init__(
        self,
        config: dict[str, Any],
        shapes: Shapes,
        dtype: torch.dtype,
        channels_last: bool,
        device: torch.device,
    ) -> None:
        from diffusers import UNet2DConditionModel

        torch.manual_seed(0)
        with torch.device(device):
            self.unet = prepared(UNet2DConditionModel(**config), dtype, channels_last)
        side = shapes.latent
        self.latents = torch.randn(2, 4, side, side, device=device, dtype=dtype)
        self.timesteps = torch.full((2,), 500, device=device, dtype=torch.long)
        self.text = torch.randn(2, shapes.text_tokens, shapes.text_width, device=device).to(dtype)
        self.forward = self.unet
        self.cudagraphs = False

    def compile(self, mode: str) -> None:
        """Compile the UNet as the guidance does (``dynamic=False``) with ``mode``."""
        self.forward = torch.compile(self.unet, mode=mode, dynamic=False)
        self.cudagraphs = mode in CUDAGRAPH_MODES and self.latents.is_cuda

    def __call__(self) -> torch.Tensor:
        if self.cudagraphs:  # each call is a new step: the last call's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            return self.forward(
                self.latents, self.timesteps, encoder_hidden_states=self.text
            ).sample


class VAEPart:
    """The VAE encode of one image (``latent_dist.sample() * scaling_factor``) and its backward
    to the image (``(latents * g).sum().backward()``, weights frozen; the image's grad is reset
    before each call)."""

    def __init__(
        self,
        config: dict[str, Any],
        shapes: Shapes,
        dtype: torch.dtype,
        channels_last: bool,
        device: torch.device,
    ) -> None:
        from diffusers import AutoencoderKL

        torch.manual_seed(0)
        with torch.device(device):
            self.vae = prepared(AutoencoderKL(**config), dtype, channels_last)
        self.scaling = float(self.vae.config.scaling_factor)
        side = shapes.image
        latent_side = side // 2 ** (len(self.vae.config.block_out_channels) - 1)
        # as the guidance hands it over: a [B, H, W, 3] render permuted to [B, 3, H, W] (strides
        # of channels_last), resized and cast, which keeps that layout
        image = torch.rand(1, side, side, 3, device=device).permute(0, 3, 1, 2) * 2.0 - 1.0
        self.images = image.to(dtype).requires_grad_(True)
        channels = int(self.vae.config.latent_channels)
        self.latent_grad = torch.randn(1, channels, latent_side, latent_side, device=device).to(
            dtype
        )

    def compile(self, mode: str) -> None:
        """Compile the encoder only, as the guidance does (``dynamic=False``), with ``mode``."""
        self.vae.encoder = torch.compile(self.vae.encoder, mode=mode, dynamic=False)

    def __call__(self) -> Optional[torch.Tensor]:
        self.images.grad = None
        latents = self.vae.encode(self.images).latent_dist.sample() * self.scaling
        (latents * self.latent_grad).sum().backward()
        return self.images.grad


def build_part(variant: Variant, tiny: bool, device: torch.device) -> Part:
    """The eager ``variant.part`` at full (SD-2.1-base) or tiny size on ``device``."""
    shapes = TINY_SHAPES if tiny else FULL_SHAPES
    dtype = DTYPES[variant.dtype]
    if variant.part == "unet":
        config = TINY_UNET if tiny else SD21_UNET
        return UNetPart(config, shapes, dtype, variant.channels_last, device)
    config = TINY_VAE if tiny else SD_VAE
    return VAEPart(config, shapes, dtype, variant.channels_last, device)


def sdpa_context(choice: str) -> contextlib.AbstractContextManager[None]:
    """``sdpa_kernel`` restricted to the backend ``choice`` names; no restriction for default."""
    backend = SDPA_BACKENDS[choice]
    return contextlib.nullcontext() if backend is None else sdpa_kernel(backend)


class OpNames(TorchDispatchMode):
    """Records the names (overload packets) of the aten ops dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: Optional[dict[str, Any]] = None,
    ) -> Any:
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def attention_backend(part: Part) -> str:
    """The attention kernel(s) one eager call of ``part`` runs under the current SDPA settings:
    fused kernel names joined by ``+``, ``math`` (softmax, no fused kernel) or ``none``."""
    with OpNames() as ops:
        part()
    fused = sorted({FUSED_ATTENTION_OPS[n] for n in ops.names if n in FUSED_ATTENTION_OPS})
    if fused:
        return "+".join(fused)
    softmax = {"_softmax", "_safe_softmax"} & ops.names  # the math backend's (torch >= 2.5: safe)
    return "math" if softmax else "none"


def count_flops(part: Part) -> int:
    """FLOPs of one eager call of ``part`` (whatever it runs: forward, or forward + backward),
    with the math attention backend so that no kernel's recomputation is counted."""
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        part()
    return int(counter.get_total_flops())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(part: Part, calls: int, device: torch.device) -> float:
    """Run ``part`` ``max(calls, 1)`` times; the wall seconds of the first call (the compile)."""
    synchronize(device)
    started = time.perf_counter()
    part()
    synchronize(device)
    first = time.perf_counter() - started
    for _ in range(calls - 1):
        part()
    synchronize(device)
    return first


def cuda_event_ms(part: Part, iters: int) -> float:
    """Median GPU ms between CUDA events around each of ``iters`` calls queued back to back."""
    events = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        part()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


def median_ms(part: Part, device: torch.device, iters: int) -> float:
    """Median ms per call of a warmed-up ``part``: CUDA events on CUDA, else wall time."""
    if device.type == "cuda":
        return cuda_event_ms(part, iters)
    return timed_ms(part, device, warmup=0, iters=iters)


def measure(
    variant: Variant,
    args: argparse.Namespace,
    device: torch.device,
    flops_cache: dict[tuple[str, str], int],
) -> Record:
    """Build, count, compile, warm up and time one variant (raises where any step fails)."""
    part = build_part(variant, args.tiny, device)
    with sdpa_context(variant.sdpa):
        key = (variant.part, variant.dtype)
        if key not in flops_cache:
            flops_cache[key] = count_flops(part)
        flops = flops_cache[key]
        backend = attention_backend(part)
        if variant.mode != "eager":
            part.compile(variant.mode)
        first = warm_up(part, args.warmup, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ms = median_ms(part, device, args.iters)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    tflops = flops / (ms * 1e-3) / 1e12
    return Record(
        **asdict(variant),
        sdpa_backend=backend,
        median_ms=ms,
        tflops=tflops,
        peak_pct=100.0 * tflops / args.peak_tflops,
        flops=flops,
        peak_mem_gib=peak,
        first_call_s=first,
        device=device_name(device),
    )


def release(device: torch.device) -> None:
    """Drop compiled code, CUDA graphs and cached memory between variants."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        with contextlib.suppress(ImportError, AttributeError):  # older torch: not in reset()
            from torch._inductor.cudagraph_trees import reset_cudagraph_trees

            reset_cudagraph_trees()
        torch.cuda.empty_cache()


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def run_variant(
    variant: Variant,
    args: argparse.Namespace,
    device: torch.device,
    flops_cache: dict[tuple[str, str], int],
) -> Record:
    """``measure`` isolated: a failure becomes a record with ``error``; memory freed after."""
    try:
        record = measure(variant, args, device, flops_cache)
    except Exception as error:  # noqa: BLE001 -- any failure of one variant must not end the run
        record = Record(**asdict(variant), device=device_name(device), error=one_line(error))
        print(f"{variant.label}: FAILED {record.error}", file=sys.stderr, flush=True)
    else:
        print(f"{variant.label}: {format_numbers(record)}", file=sys.stderr, flush=True)
    finally:
        release(device)
    return record


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def fmt(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_numbers(r: Record) -> str:
    return (
        f"{fmt(r.median_ms, 3)} ms, {fmt(r.tflops, 1)} TFLOP/s ({fmt(r.peak_pct, 1)} % of peak), "
        f"attention {r.sdpa_backend}, peak {fmt(r.peak_mem_gib, 2)} GiB, "
        f"first call {fmt(r.first_call_s, 1)} s"
    )


def markdown_table(records: list[Record]) -> str:
    """One row per record; a failed variant's row carries its error."""
    rows = [
        "| part | dtype | mode | channels-last | sdpa (kernel) | median ms | TFLOP/s | % of peak "
        "| GFLOP | peak mem GiB | first call s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        head = f"| {r.part} | {r.dtype} | {r.mode} | {'yes' if r.channels_last else 'no'} | "
        if r.error is not None:
            rows.append(head + f"{r.sdpa} | failed: {r.error.replace('|', '/')} ||||||")
            continue
        gflop = None if r.flops is None else r.flops / 1e9
        rows.append(
            head + f"{r.sdpa} ({r.sdpa_backend}) | {fmt(r.median_ms, 3)} | {fmt(r.tflops, 1)} | "
            f"{fmt(r.peak_pct, 1)} | {fmt(gflop, 1)} | {fmt(r.peak_mem_gib, 2)} | "
            f"{fmt(r.first_call_s, 1)} |"
        )
    return "\n".join(rows)


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_variants(text: str, parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """``[(dtype, mode)]`` of ``DTYPE-MODE`` strings; unknown ones are a usage error."""
    known_modes = MODES["unet"]
    variants = []
    for item in split_list(text):
        dtype, _, mode = item.partition("-")
        if dtype not in DTYPES or mode not in known_modes:
            parser.error(
                f"--variants: {item!r} is not DTYPE-MODE with DTYPE in {sorted(DTYPES)} and MODE "
                f"in {list(known_modes)}"
            )
        variants.append((dtype, mode))
    return variants


def default_variants(device: torch.device) -> str:
    """Every dtype x mode worth running: fp16/bf16 x all modes on CUDA, fp32 eager/default else."""
    if device.type != "cuda":
        return "fp32-eager,fp32-default"
    return ",".join(f"{d}-{m}" for d in ("fp16", "bf16") for m in MODES["unet"])


def plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Variant]:
    """The variants to run, part by part, in the order given; modes a part lacks are skipped."""
    pairs = parse_variants(args.variants, parser)
    parts = split_list(args.parts)
    sdpas = split_list(args.sdpa)
    for name, given, known in (("--parts", parts, MODES), ("--sdpa", sdpas, SDPA_BACKENDS)):
        unknown = [g for g in given if g not in known]
        if unknown or not given:
            parser.error(f"{name}: {unknown or given} not in {list(known)}")
    variants = []
    for part in parts:
        for dtype, mode in pairs:
            if mode not in MODES[part]:
                print(f"{part}: mode {mode} not run (CUDA graphs: UNet only)", file=sys.stderr)
                continue
            for sdpa in sdpas:
                variants.append(Variant(part, dtype, mode, args.channels_last, sdpa))
    return variants


def arguments() -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="unet,vae", help="comma list of unet, vae")
    parser.add_argument(
        "--variants",
        default=None,
        help="comma list of DTYPE-MODE, e.g. bf16-eager,bf16-max-autotune-no-cudagraphs "
        "(default: fp16/bf16 x every mode on CUDA, fp32-eager,fp32-default on the CPU)",
    )
    parser.add_argument(
        "--sdpa", default="default", help="comma list of default, flash, efficient, math, cudnn"
    )
    parser.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="keep both models' weights in NCHW",
    )
    parser.add_argument("--iters", type=int, default=50, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=10, help="calls before timing (>= 1)")
    parser.add_argument("--peak-tflops", type=float, default=989.4, help="dense peak, TFLOP/s")
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    parser.add_argument("--tiny", action="store_true", help="tiny models; runs on the CPU")
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="torch.backends.cudnn.benchmark = True (cuDNN times its convolution algorithms)",
    )
    args = parser.parse_args()
    if args.iters < 1 or args.warmup < 1:
        parser.error("--iters and --warmup must be >= 1")
    return args, parser


def main() -> int:
    args, parser = arguments()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.tiny:
        print("bench/guidance_kernels.py: needs CUDA (full-sized models) or --tiny; skipped.")
        return 0
    args.variants = args.variants or default_variants(device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    variants = plan(args, parser)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # not the fp32-modules note of every `.to()`

    size = "tiny models" if args.tiny else "SD-2.1-base-sized UNet and VAE, random weights"
    title = (
        f"Guidance kernels on {device_name(device)} ({size}; torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}; cudnn.benchmark {args.cudnn_benchmark}; "
        f"median of {args.iters} after {args.warmup} warm-up; "
        f"% of {args.peak_tflops} TFLOP/s)"
    )
    print(title, file=sys.stderr, flush=True)
    records: list[Record] = []
    flops_cache: dict[tuple[str, str], int] = {}
    for variant in variants:
        records.append(run_variant(variant, args, device, flops_cache))
        if args.json is not None:
            args.json.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    print(f"\n{title}\n")
    print(markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
