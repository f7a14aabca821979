"""The rendering stack on CUDA (GPU machine): nerfacc path quality, 512x512 eval memory."""

from __future__ import annotations

import pytest
import torch

from studio_dreamfusion.geometry.implicit_volume import ImplicitVolume
from studio_dreamfusion.materials import NeuralRadiance
from tests.plugins.dreamfusion.scene import orbit_cameras, psnr, render_flat
from tests.plugins.dreamfusion.test_nerf_fit import build, fit, render_views

pytestmark = pytest.mark.gpu


def fit_flat_scene(backend: str, resolution: int = 64, steps: int = 600) -> float:
    torch.manual_seed(0)
    train = orbit_cameras(24, resolution, resolution)
    held_out = orbit_cameras(8, resolution, resolution, azimuth_offset=22.5, elevations=(0.0, 20.0))
    targets = render_flat(train["rays_o"], train["rays_d"])
    material = NeuralRadiance({"input_feature_dims": 8})
    geometry, renderer = build(material, "finite_difference", 8, samples=128, backend=backend)
    for module in (geometry, material, renderer, renderer.background):
        module.cuda()
    fit(
        renderer,
        [*geometry.parameters(), *material.parameters()],
        train,
        targets,
        steps=steps,
        rays_per_step=4096,
    )
    predicted = torch.cat([o["comp_rgb"] for o in render_views(renderer, held_out)])
    return psnr(predicted, render_flat(held_out["rays_o"], held_out["rays_d"]))


def test_nerfacc_path_matches_the_torch_path_at_64():
    torch_psnr = fit_flat_scene("torch")
    nerfacc_psnr = fit_flat_scene("nerfacc")
    print(f"64x64 held-out PSNR: torch {torch_psnr:.2f} dB, nerfacc {nerfacc_psnr:.2f} dB")
    assert torch_psnr >= 24.0
    assert nerfacc_psnr >= torch_psnr - 0.5


@pytest.mark.parametrize("backend", ["torch", "nerfacc"])
def test_512_eval_render_stays_within_memory(backend):
    from studio_dreamfusion.backgrounds import NeuralEnvironmentMap
    from studio_dreamfusion.materials import DiffuseWithPointLight
    from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer

    geometry = ImplicitVolume({"radius": 2.0, "normal_type": "analytic"}).cuda()
    material = DiffuseWithPointLight({}).cuda()
    background = NeuralEnvironmentMap({}).cuda()
    renderer = (
        NeRFVolumeRenderer(
            {"radius": 2.0, "num_samples_per_ray": 512, "backend": backend},
            geometry=geometry,
            material=material,
            background=background,
        )
        .cuda()
        .eval()
    )
    views = orbit_cameras(1, 512, 512, distance=3.0)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.no_grad():
        out = renderer(
            rays_o=views["rays_o"].cuda(),
            rays_d=views["rays_d"].cuda(),
            light_positions=views["light_positions"].cuda(),
        )
    peak_gib = (torch.cuda.max_memory_allocated() - before) / 2**30
    print(f"{backend}: 512x512 eval render peak {peak_gib:.2f} GiB")
    assert out["comp_rgb"].shape == (1, 512, 512, 3)
    assert torch.isfinite(out["comp_rgb"]).all()
    assert peak_gib < 8.0
    # the blob at the centre is dense: an evaluation right after construction (as in
    # `studio test` after loading a checkpoint) must see it, not an empty occupancy grid
    assert out["opacity"].max() > 0.9


def test_occupancy_grid_is_refilled_after_loading_weights():
    """Resuming at a step that is not a multiple of the grid's update interval used to train on an
    empty grid (no samples) until the next update."""
    from studio_dreamfusion.backgrounds import SolidColor
    from studio_dreamfusion.materials import NoMaterial
    from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer

    def make():
        geometry = ImplicitVolume({"radius": 1.0}).cuda()
        renderer = NeRFVolumeRenderer(
            {"radius": 1.0, "num_samples_per_ray": 64, "backend": "nerfacc"},
            geometry=geometry,
            material=NoMaterial({}).cuda(),
            background=SolidColor({}).cuda(),
        ).cuda()
        return geometry, renderer

    geometry, renderer = make()
    state = {"geometry": geometry.state_dict(), "renderer": renderer.state_dict()}
    geometry2, renderer2 = make()
    geometry2.load_state_dict(state["geometry"])
    renderer2.load_state_dict(state["renderer"])
    renderer2.train()
    renderer2.do_update_step(0, 5003, on_load_weights=True)
    renderer2.do_update_step(0, 5003)  # 5003 % 16 != 0: no scheduled update at this step
    views = orbit_cameras(1, 32, 32, distance=2.5)
    out = renderer2(
        rays_o=views["rays_o"].cuda(),
        rays_d=views["rays_d"].cuda(),
        light_positions=views["light_positions"].cuda(),
    )
    assert out["opacity"].max() > 0.9


def test_torch_path_prunes_like_the_nerfacc_path():
    """A dense core inside a faint haze (alpha 0.005 at the marching step): nerfacc skips the
    haze, and so does the PyTorch path with ``grid_prune``; without it the haze shows."""
    from studio_dreamfusion.renderers.nerf_volume import NeRFVolumeRenderer
    from tests.plugins.dreamfusion.test_renderer import ConstantSphere, renderer_for

    class CoreInHaze(ConstantSphere):
        def forward_density(self, points):
            radius = points.reshape(-1, 3).norm(dim=-1, keepdim=True)
            return torch.where(radius < 0.4, 20.0, torch.where(radius < 0.9, 0.05, 0.0))

    o = torch.tensor([-3.0, 0.0, 0.0]).expand(1, 1, 2, 3).clone()
    o[0, 0, 1, 1] = 0.6  # this ray crosses the haze only (chord 1.34)
    d = torch.tensor([1.0, 0.0, 0.0]).expand(1, 1, 2, 3)
    opacities = {}
    for name, backend, prune in [
        ("nerfacc", "nerfacc", True),
        ("torch", "torch", True),
        ("torch-unpruned", "torch", False),
    ]:
        renderer = renderer_for(
            CoreInHaze({"radius": 1.0}), samples=32, backend=backend, grid_prune=prune
        )
        assert isinstance(renderer, NeRFVolumeRenderer)
        for module in (renderer, renderer.geometry, renderer.material, renderer.background):
            module.cuda()
        renderer.eval()
        with torch.no_grad():
            out = renderer(
                rays_o=o.cuda(), rays_d=d.cuda(), light_positions=torch.zeros(1, 3).cuda()
            )
        opacities[name] = out["opacity"][0, 0, :, 0].cpu()
    print({k: [round(x, 4) for x in v.tolist()] for k, v in opacities.items()})
    assert opacities["nerfacc"][0] > 0.99 and opacities["torch"][0] > 0.99  # the core
    assert opacities["nerfacc"][1] < 1e-3 and opacities["torch"][1] < 1e-3  # haze skipped
    assert opacities["torch-unpruned"][1] > 0.05  # 1 - exp(-0.05 * 1.34) = 0.065


def test_fused_explicit_normals_equal_the_double_backward_on_cuda():
    """The preset's geometry on CUDA: Triton grid + explicit normals against PyTorch grid +
    autograd's double backward: same density, normals and parameter gradients."""
    from studio.config.resolve import load_experiment

    torch.manual_seed(0)
    config = dict(load_experiment("dreamfusion-sd", [], prompt="x").experiment.system["geometry"])
    fused = ImplicitVolume(config).cuda()
    config["pos_encoding_config"] = {**config["pos_encoding_config"], "backend": "torch"}
    plain = ImplicitVolume(config).cuda()
    with torch.no_grad():
        fused.encoding.encoding.params.uniform_(-0.3, 0.3)
    plain.load_state_dict(fused.state_dict())
    plain.explicit_analytic_normals = False
    assert fused.encoding.encoding.fused and not plain.encoding.encoding.fused
    points = (torch.rand(200_000, 3, device="cuda") * 2 - 1) * 1.2
    assert fused._explicit_normals_apply(points)
    results = []
    for geometry in (fused, plain):
        out = geometry(points, output_normal=True)
        torch.manual_seed(1)
        loss = sum((out[k] * torch.randn_like(out[k])).sum() for k in ("density", "normal"))
        grads = torch.autograd.grad(loss, [geometry.encoding.encoding.params])
        results.append((out["density"], out["normal"], *grads))
    for name, got, want in zip(("density", "normal", "grid grad"), *results, strict=True):
        scale = want.abs().max()
        assert (got - want).abs().max() <= 1e-4 * scale, name
