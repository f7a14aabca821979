"""The VSD guidance's trainable state in a real run (``prolificdreamer-primitives`` at a few
steps): the checkpoint holds the LoRA and the camera embedding and no frozen UNet weight, and a
run SIGKILLed mid-way and resumed ends bit-identical on the CPU to an uninterrupted one (scene,
LoRA, camera embedding and optimizer state)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio.rundir import find_checkpoint
from studio.training.checkpoint import load_checkpoint
from studio_primitives.weights import sd_folder
from tests.conftest import Studio, wait_for_step

METHOD = "prolificdreamer-primitives"
STEPS = 16
ARGS = [
    "prompt=a red torus",
    "trainer.enable_progress_bar=false",
    "data.n_test_views=1",
    "data.n_val_views=1",
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=1000",
    "checkpoint.every_n_train_steps=4",
]


def run_dir(studio: Studio) -> Path:
    (root,) = (studio.cwd / "outputs" / METHOD).iterdir()
    return root


def tensors(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested checkpoint structure, by its path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {}
    found: dict[str, torch.Tensor] = {}
    for key, value in items:
        found.update(tensors(value, f"{prefix}/{key}"))
    return found


@pytest.mark.slow
def test_lora_state_is_checkpointed_alone_and_resumes_bit_identically(toy_site, tmp_path) -> None:
    env = {"STUDIO_CACHE_DIR": str(tmp_path / "cache")}
    whole = Studio(toy_site, tmp_path / "whole")
    whole.cwd.mkdir()
    result = whole.run("run", METHOD, *ARGS, **env)
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(run_dir(whole) / "ckpts" / "last.ckpt")
    assert checkpoint["global_step"] == STEPS

    saved = checkpoint["objects"]["guidance"]
    assert saved and all(k.startswith(("lora.", "camera_embedding.")) for k in saved), list(saved)
    assert any(".up." in k for k in saved) and any("camera_embedding" in k for k in saved)
    assert not any(k.startswith("guidance") for k in checkpoint["state_dict"])
    # no frozen weight anywhere: the LoRA and embedding are a fraction of the UNet they adapt
    unet = load_file(sd_folder() / "unet" / "diffusion_pytorch_model.safetensors")
    unet_values = sum(v.numel() for v in unet.values())
    assert sum(v.numel() for v in saved.values()) < 0.2 * unet_values
    for key, tensor in tensors(checkpoint).items():
        same_shape = (u for u in unet.values() if u.shape == tensor.shape)
        assert not any(torch.equal(tensor, u.to(tensor.dtype)) for u in same_shape), key
    # after 16 steps the LoRA has moved away from its zero up-projections
    assert any(v.abs().sum() > 0 for k, v in saved.items() if ".up." in k)

    killed = Studio(toy_site, tmp_path / "killed")
    killed.cwd.mkdir()
    proc = killed.popen("run", METHOD, *ARGS, **env)
    root = wait_for_step(killed, 6, proc, timeout=300, name=METHOD)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (root / "finished.yaml").exists()
    newest, _ = find_checkpoint(str(root), "run")
    assert load_checkpoint(newest)["global_step"] in (4, 8, 12)
    result = killed.run("resume", str(root), **env)
    assert result.returncode == 0, result.stderr

    resumed = load_checkpoint(root / "ckpts" / "last.ckpt")
    a, b = tensors(resumed), tensors(checkpoint)
    assert a.keys() == b.keys()
    for key, tensor in a.items():
        assert torch.equal(tensor, b[key]), key
    assert (root / "metrics.csv").read_text() == (run_dir(whole) / "metrics.csv").read_text()
