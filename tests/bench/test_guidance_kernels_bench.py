"""bench/guidance_kernels.py's offline parts: the variants it plans, a tiny eager variant of each
part measured on the CPU, a failing variant kept as a record, and the FLOPs of the full-sized
parts (counted on the meta device; the GPU measurement itself runs on the device)."""

from __future__ import annotations

import argparse
import math
from types import ModuleType

import pytest
import torch

from tests.bench.loading import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("guidance_kernels")


def options(**overrides: object) -> argparse.Namespace:
    base = dict(
        parts="unet,vae",
        variants="fp32-eager",
        sdpa="default",
        channels_last=True,
        iters=2,
        warmup=1,
        peak_tflops=989.4,
        json=None,
        tiny=True,
    )
    return argparse.Namespace(**{**base, **overrides})


def test_plan_runs_each_part_its_modes_and_refuses_unknown_variants(bench: ModuleType) -> None:
    parser = argparse.ArgumentParser()
    args = options(variants="bf16-eager,fp16-reduce-overhead", sdpa="default,flash")
    labels = [v.label for v in bench.plan(args, parser)]
    assert labels == [
        "unet bf16-eager cl sdpa=default",
        "unet bf16-eager cl sdpa=flash",
        "unet fp16-reduce-overhead cl sdpa=default",
        "unet fp16-reduce-overhead cl sdpa=flash",
        "vae bf16-eager cl sdpa=default",  # CUDA graphs: the UNet only
        "vae bf16-eager cl sdpa=flash",
    ]
    for bad in (
        {"variants": "fp16-eagr"},
        {"variants": "int8-eager"},
        {"sdpa": "xformers"},
        {"parts": "decoder"},
    ):
        with pytest.raises(SystemExit):
            bench.plan(options(**bad), parser)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert bench.default_variants(cpu) == "fp32-eager,fp32-default"
    assert len(bench.default_variants(cuda).split(",")) == 10


@pytest.mark.slow
@pytest.mark.parametrize("part", ["unet", "vae"])
def test_tiny_eager_variant_is_measured_on_the_cpu(bench: ModuleType, part: str) -> None:
    variant = bench.Variant(part, "fp32", "eager", True, "math")
    record = bench.run_variant(variant, options(), torch.device("cpu"), {})
    assert record.error is None
    assert record.sdpa_backend == "math"
    assert record.flops > 1e9 and math.isfinite(record.median_ms) and record.median_ms > 0
    assert record.tflops == pytest.approx(record.flops / record.median_ms / 1e9)
    assert record.peak_pct == pytest.approx(100 * record.tflops / 989.4)
    assert "| math (math) |" in bench.markdown_table([record])


def test_vae_part_backpropagates_to_the_image_only(bench: ModuleType) -> None:
    variant = bench.Variant("vae", "fp32", "eager", False, "default")
    part = bench.build_part(variant, True, torch.device("cpu"))
    grad = part()
    assert grad is part.images.grad and grad.shape == (1, 3, 64, 64)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in part.vae.parameters())
    assert part() is not grad  # the image's grad is reset, not accumulated


def test_a_failing_variant_is_a_record_and_the_run_goes_on(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("no kernel\nsecond line")

    monkeypatch.setattr(bench, "build_part", broken)
    variant = bench.Variant("unet", "bf16", "default", True, "flash")
    record = bench.run_variant(variant, options(), torch.device("cpu"), {})
    assert record.error == "RuntimeError: no kernel" and record.median_ms is None
    assert "unet bf16-default cl sdpa=flash: FAILED RuntimeError: no kernel" in (
        capsys.readouterr().err
    )
    assert "failed: RuntimeError: no kernel" in bench.markdown_table([record])


def test_full_sized_flops(bench: ModuleType) -> None:
    # SD 2.1-base: UNet forward of the CFG pair (batch 2, 64x64 latents, 77x1024 text) and the
    # VAE encode of a 512x512 image forward + backward, counted on shapes alone
    flops = {}
    for part in ("unet", "vae"):
        variant = bench.Variant(part, "fp16", "eager", True, "default")
        flops[part] = bench.count_flops(bench.build_part(variant, False, torch.device("meta")))
    assert flops["unet"] == pytest.approx(1.6085e12, rel=1e-3)
    assert flops["vae"] == pytest.approx(2.2677e12, rel=1e-3)
