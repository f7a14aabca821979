"""Loader helpers: which weight variant to load, weights dtype, option checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio.errors import ConfigError
from studio.models.hub import ModelNotAvailableError
from studio_dreamfusion.guidance.loading import MemoryOptions, check_memory_options, weights_dtype
from studio_dreamfusion.guidance.stable_diffusion import StableDiffusionGuidance
from studio_dreamfusion.pretrained import pick_variant, weight_variants


def touch(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return folder


def test_pick_variant(tmp_path: Path) -> None:
    plain = touch(
        tmp_path / "plain", "unet/diffusion_pytorch_model.safetensors", "unet/config.json"
    )
    both = touch(
        tmp_path / "both",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
    )
    fp16_only = touch(
        tmp_path / "fp16",
        "model.fp16-00001-of-00002.safetensors",
        "model.fp16-00002-of-00002.safetensors",
        "model.safetensors.index.fp16.json",
    )
    assert weight_variants(both) == {"", "fp16"} and weight_variants(fp16_only) == {"fp16"}
    assert pick_variant(plain, torch.float16) is None
    assert pick_variant(both, torch.float16) == "fp16"
    assert pick_variant(both, torch.float32) is None  # full-precision weights for fp32 compute
    assert pick_variant(fp16_only, torch.float32) == "fp16"  # nothing else to load
    assert pick_variant(tmp_path / "missing", torch.float16) is None


def test_weights_dtype() -> None:
    assert weights_dtype(True, torch.device("cuda", 0)) == torch.float16
    assert weights_dtype(False, torch.device("cuda", 0)) == torch.float32
    assert weights_dtype(True, torch.device("cpu")) == torch.float32


def test_sequential_offload_on_cuda_needs_accelerate(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name)
    )
    options = MemoryOptions(sequential_cpu_offload=True)
    with pytest.raises(
        ConfigError, match="enable_sequential_cpu_offload=true needs the accelerate"
    ):
        check_memory_options(options, torch.device("cuda", 0), "system.guidance")
    check_memory_options(options, torch.device("cpu"), "system.guidance")  # skipped on CPU


def test_unavailable_model_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="studio models pull"):
        StableDiffusionGuidance({"pretrained_model_name_or_path": "nobody/no-such-model"})
    with pytest.raises(ModelNotAvailableError, match=r"system\.guidance\.pretrained_model_name"):
        StableDiffusionGuidance({"pretrained_model_name_or_path": str(tmp_path)})  # no unet/
