"""Magic3D's refine step: the guidance's losses plus the mesh regularisers on the rendered mesh,
with gradients reaching the DMTet grid and its texture (reference §5.2)."""

from __future__ import annotations

import pytest
import torch

from studio.config.resolve import load_experiment
from studio.data.random_camera import RandomCameraDataModule
from studio_magic3d.system import Magic3DSystem


class MeanColourGuidance:
    """A stand-in guidance: ``loss_sds`` is the rendered image's mean colour."""

    def __call__(self, rgb, prompt_utils, **batch):
        return {"loss_sds": rgb.mean(), "grad_norm": 0.0}


def refine_system(resolution: int = 16, **loss: float) -> tuple[Magic3DSystem, dict]:
    overrides = [
        "system.geometry_convert_from=",
        f"system.geometry.isosurface_resolution={resolution}",
    ]
    overrides += [f"system.loss.lambda_{name}={value}" for name, value in loss.items()]
    resolved = load_experiment("magic3d-refine-primitives", overrides, prompt="a red cube")
    parsed = resolved.parsed
    torch.manual_seed(0)
    system = Magic3DSystem(parsed["system"])
    with torch.no_grad():  # a sphere of radius 0.5 in the grid
        system.geometry.sdf.copy_(system.geometry.grid_points().norm(dim=-1, keepdim=True) - 0.5)
    system.guidance, system.prompt_utils = MeanColourGuidance(), None
    data = dict(parsed["data"], width=32, height=32)
    return system, RandomCameraDataModule(data).train_batch()


def test_refine_loss_is_guidance_plus_weighted_mesh_regularisers() -> None:
    system, batch = refine_system(sds=1.0, normal_consistency=100.0, laplacian_smoothness=10.0)
    out = system.training_step(batch)
    mesh = system.geometry.isosurface()
    nc, lap = mesh.normal_consistency(), mesh.laplacian()
    assert out["loss_normal_consistency"] == pytest.approx(nc.item(), rel=1e-5)
    assert out["loss_laplacian_smoothness"] == pytest.approx(lap.item(), rel=1e-5)
    expected = out["loss_sds"] + 100.0 * nc.item() + 10.0 * lap.item()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)

    out["loss"].backward()
    geometry = system.geometry
    for name, parameter in [("sdf", geometry.sdf), ("deformation", geometry.deformation)]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    texture = [p for n, p in geometry.named_parameters() if n.startswith("encoding")]
    assert texture and any(p.grad is not None and p.grad.abs().sum() > 0 for p in texture)


def test_a_zero_weight_switches_a_mesh_regulariser_off() -> None:
    system, batch = refine_system(normal_consistency=0.0)
    out = system.training_step(batch)
    assert "loss_normal_consistency" not in out
    assert out["loss"].item() == pytest.approx(out["loss_sds"].item(), rel=1e-6)


def test_loss_terms_follow_the_stage() -> None:
    coarse = Magic3DSystem.Config(refinement=False, guidance_type="stable-diffusion")
    refine = Magic3DSystem.Config(refinement=True, guidance_type="stable-diffusion")
    assert Magic3DSystem.loss_terms(coarse) == {"sds", "orient", "sparsity", "opaque", "z_variance"}
    assert Magic3DSystem.loss_terms(refine) == {"sds", "normal_consistency", "laplacian_smoothness"}


def test_the_coarse_step_can_be_captured_and_the_refinement_step_says_why_not() -> None:
    """Coarse: DreamFusion's components plus soft shading, all declared; on the CPU only the
    renderer's torch marching is left (CUDA marches with nerfacc). Refinement: the system says
    why (its mesh changes size every step)."""
    from tests.plugins.dreamfusion.preset_systems import preset_system

    coarse = preset_system("magic3d-coarse-sd", Magic3DSystem, fixed_capacity=True)
    assert coarse.material.cfg.soft_shading
    assert coarse.graph_blockers() == [
        "system.renderer marches with the torch backend, not nerfacc"
    ]
    refine, _ = refine_system()
    assert any(r.startswith("system.refinement is true") for r in refine.graph_blockers())
