"""bench/dreamfusion.py's offline parts: the full-sized architectures it rebuilds and the pipeline
folder it writes for the IF guidance (the GPU measurement itself runs on the device)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    import sys

    sys.path.insert(0, str(BENCH))  # the bench imports its sibling module `timing`
    try:
        spec = importlib.util.spec_from_file_location("bench_dreamfusion", BENCH / "dreamfusion.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def parameters_on_meta(config: dict) -> int:
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    return sum(p.numel() for p in unet.parameters())


def test_full_sized_unets_have_the_published_sizes(bench: ModuleType) -> None:
    # SD 2.1-base: 865.9M parameters; IF-I-XL: "4.3B" (the model card)
    assert 860e6 < parameters_on_meta(bench.SD21_UNET) < 870e6
    assert 4.2e9 < parameters_on_meta(bench.IF_I_XL_UNET) < 4.4e9


def test_if_pipeline_folder_loads_in_the_deep_floyd_guidance(
    bench: ModuleType, tmp_path: Path
) -> None:
    from diffusers import UNet2DConditionModel

    from studio_dreamfusion.guidance.deep_floyd import DeepFloydGuidance
    from studio_primitives.models.architectures import if_scheduler

    # the bench's layout (unet + scheduler + model index) with a tiny IF-like UNet
    tiny = {
        **bench.IF_I_XL_UNET,
        "block_out_channels": (32, 64, 64, 64),
        "layers_per_block": 1,
        "attention_head_dim": 16,
        "cross_attention_dim": 64,
        "encoder_hid_dim": 48,
        "addition_embed_type_num_heads": 4,
        "norm_num_groups": 8,
    }
    UNet2DConditionModel(**tiny).save_pretrained(tmp_path / "unet")
    if_scheduler().save_pretrained(tmp_path / "scheduler")
    bench.write_model_index(
        tmp_path, "IFPipeline", {"unet": "UNet2DConditionModel", "scheduler": "DDPMScheduler"}
    )
    guidance = DeepFloydGuidance(
        {"pretrained_model_name_or_path": str(tmp_path), "half_precision_weights": False},
        device=torch.device("cpu"),
    )
    prompt_utils = bench.random_prompt_output(torch.device("cpu"), 48)
    render = torch.rand(1, 16, 16, 3, requires_grad=True)
    out = guidance(
        render,
        prompt_utils,
        elevation=torch.tensor([10.0]),
        azimuth=torch.tensor([0.0]),
        camera_distances=torch.tensor([1.8]),
    )
    out["loss_sds"].backward()
    assert render.grad is not None and torch.isfinite(render.grad).all()
