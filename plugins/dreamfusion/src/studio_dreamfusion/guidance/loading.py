"""Loading a diffusion pipeline for guidance: weights dtype, freezing, VRAM options.

The VRAM options are the reference's:

* ``enable_memory_efficient_attention`` -- on torch >= 2 the UNet already uses PyTorch's fused
  scaled-dot-product attention, so this only logs that; on older torch it switches to xformers.
* ``enable_sequential_cpu_offload`` -- weights live on the CPU and stream to the GPU layer by
  layer (slow, smallest footprint; needs accelerate and CUDA; skipped with a message on CPU).
* ``enable_attention_slicing`` -- attention computed one head-slice at a time.
* ``enable_channels_last_format`` -- UNet weights in ``channels_last`` memory format.
* ``token_merging`` -- ToMe for Stable Diffusion (``tomesd.apply_patch(unet, **params)``).
* ``compile`` (ours, speed) -- ``torch.compile`` the UNet with this mode (``reduce-overhead`` adds
  CUDA graphs: the UNet at SDS batch sizes is launch-bound) and the VAE encoder (no CUDA graphs,
  it runs under autograd). CUDA only; ignored with a message elsewhere. The first steps are slow
  while it compiles; each new batch size compiles once more.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from studio.api import ConfigError

log = logging.getLogger(__name__)


def weights_dtype(half_precision: bool, device: torch.device) -> torch.dtype:
    """fp16 when asked for and on CUDA; fp32 otherwise (CPU kernels for fp16 are slow or absent)."""
    return torch.float16 if half_precision and device.type == "cuda" else torch.float32


def freeze(*modules: nn.Module | None) -> None:
    """Eval mode and ``requires_grad=False`` for every parameter of ``modules``."""
    for module in modules:
        if module is not None:
            module.eval()
            module.requires_grad_(False)


@dataclass
class MemoryOptions:
    """The VRAM switches of a guidance config (see the module docstring)."""

    memory_efficient_attention: bool = False
    sequential_cpu_offload: bool = False
    attention_slicing: bool = False
    channels_last: bool = False
    token_merging: bool = False
    token_merging_params: dict[str, Any] = field(default_factory=dict)
    compile: str = "none"


def check_memory_options(options: MemoryOptions, device: torch.device, path: str) -> None:
    """Fail early, with the fix, for options this installation cannot honour."""
    if options.token_merging and importlib.util.find_spec("tomesd") is None:
        raise ConfigError(
            f"{path}.token_merging=true needs the tomesd package (token merging for Stable "
            f"Diffusion), which is not installed; install it (pip install tomesd) or set "
            f"{path}.token_merging=false."
        )
    if (
        options.sequential_cpu_offload
        and device.type == "cuda"
        and importlib.util.find_spec("accelerate") is None
    ):
        raise ConfigError(
            f"{path}.enable_sequential_cpu_offload=true needs the accelerate package, which is not "
            f"installed; install it (pip install accelerate) or set "
            f"{path}.enable_sequential_cpu_offload=false."
        )


def place_pipeline(
    pipe: Any, unet: nn.Module, options: MemoryOptions, device: torch.device
) -> None:
    """Apply ``options`` to ``pipe``/``unet`` and move the pipeline to ``device`` (unless it is
    offloaded sequentially, which places the weights itself)."""
    if options.memory_efficient_attention:
        if int(torch.__version__.split(".")[0]) >= 2:
            log.info(
                "enable_memory_efficient_attention: torch >= 2 already uses scaled-dot-product "
                "attention; nothing to do."
            )
        elif importlib.util.find_spec("xformers") is not None:
            pipe.enable_xformers_memory_efficient_attention()
        else:
            log.warning("enable_memory_efficient_attention: xformers is not installed; ignored.")
    offloaded = False
    if options.sequential_cpu_offload:
        if device.type == "cuda":
            pipe.enable_sequential_cpu_offload(gpu_id=device.index or 0)
            offloaded = True
        else:
            log.info("enable_sequential_cpu_offload: the guidance runs on the CPU; ignored.")
    if options.attention_slicing:
        pipe.enable_attention_slicing(1)
    if options.channels_last:
        unet.to(memory_format=torch.channels_last)
    if options.token_merging:
        import tomesd

        tomesd.apply_patch(unet, **options.token_merging_params)
    if not offloaded:
        pipe.to(device)
    if options.compile != "none":
        compile_for_speed(pipe, options.compile, device, offloaded)


COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


def compile_for_speed(pipe: Any, mode: str, device: torch.device, offloaded: bool) -> None:
    """``torch.compile`` the pipeline's UNet (``mode``) and VAE encoder (default mode)."""
    if device.type != "cuda" or offloaded:
        log.info("compile=%s: only used on CUDA without CPU offload; running eagerly.", mode)
        return
    pipe.unet = torch.compile(pipe.unet, mode=mode, dynamic=False)
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        vae.encoder = torch.compile(vae.encoder, dynamic=False)
