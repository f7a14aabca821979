"""Split-sum shading is differentiable w.r.t. the material and the normal (what Fantasia3D's
appearance stage optimises), and runs the same on CUDA as on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from studio_fantasia3d.lighting import EnvironmentLight, brdf_lut, shade_split_sum
from tests.plugins.fantasia3d.lighting_cache import private_cache  # noqa: F401 - fixture


def _inputs(count: int, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random materials in the reference's ranges, normals, and views within ~70 deg of them."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=dtype)

    normal = F.normalize(torch.randn(count, 3, generator=generator, dtype=dtype), dim=-1)
    view = F.normalize(
        normal + 0.6 * torch.randn(count, 3, generator=generator, dtype=dtype), dim=-1
    )
    flip = (normal * view).sum(-1, keepdim=True) < 0.3
    view = torch.where(flip, normal, view)
    return {
        "albedo": 0.1 + 0.8 * rand(count, 3),
        "metallic": 0.05 + 0.8 * rand(count, 1),
        "roughness": 0.1 + 0.75 * rand(count, 1),
        "normal": normal,
        "view_dir": view,
    }


def test_shading_passes_gradcheck_in_float64() -> None:
    """Analytic gradients w.r.t. albedo, metallic, roughness and the (unnormalised) normal match
    central finite differences in float64 (everything is piecewise smooth: bilinear texture
    reads, linear blending between roughness levels)."""
    light = EnvironmentLight.from_source("sky", 2.0, resolution=64).double()
    lut = brdf_lut().double()
    x = _inputs(6, torch.float64)
    view = x.pop("view_dir")
    leaves = [
        x[k].clone().requires_grad_(True) for k in ("albedo", "metallic", "roughness", "normal")
    ]

    def shade(albedo, metallic, roughness, normal):
        return shade_split_sum(light, albedo, metallic, roughness, normal, view, lut=lut)

    assert torch.autograd.gradcheck(shade, leaves, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradients_are_finite_and_reach_every_input() -> None:
    """float32, a batch with the hard cases (normal straight up and down, where the map's azimuth
    is undefined; view along the normal): all gradients finite, none identically zero."""
    light = EnvironmentLight.from_source("sky", 2.0)
    x = _inputs(256, torch.float32, seed=1)
    x["normal"][:2] = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    x["view_dir"][:2] = x["normal"][:2]
    leaves = {k: v.clone().requires_grad_(True) for k, v in x.items() if k != "view_dir"}
    colour = shade_split_sum(light, **leaves, view_dir=x["view_dir"])
    assert colour.shape == (256, 3) and torch.isfinite(colour).all()
    colour.sum().backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), name
        assert (leaf.grad.abs().sum(-1) > 0).float().mean() > 0.9, name


def test_rougher_and_more_metallic_change_the_colour_as_expected() -> None:
    """Sanity of signs: a black dielectric only reflects, more at grazing angles (Fresnel); a
    white rough dielectric facing up reflects about the sky's irradiance / pi."""
    light = EnvironmentLight.from_source("sky", 2.0)
    up = torch.tensor([[0.0, 0.0, 1.0]])
    grazing_view = F.normalize(torch.tensor([[1.0, 0.0, 0.15]]), dim=-1)
    black, zero = torch.zeros(1, 3), torch.zeros(1, 1)
    rough = torch.full((1, 1), 0.9)
    head_on = shade_split_sum(light, black, zero, rough, up, up)
    glancing = shade_split_sum(light, black, zero, rough, up, grazing_view)
    assert (glancing > head_on).all()
    white = shade_split_sum(light, torch.ones(1, 3), zero, rough, up, up)
    assert torch.allclose(white, light.diffuse(up) + head_on, rtol=1e-5)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    """The light moves with ``.to("cuda")``; shading and its gradients agree with the CPU's."""
    light = EnvironmentLight.from_source("sky", 2.0)
    x = _inputs(4096, torch.float32, seed=2)
    results = {}
    for device in ("cpu", "cuda"):
        leaves = {k: v.detach().to(device).requires_grad_(k != "view_dir") for k, v in x.items()}
        colour = shade_split_sum(light.to(device), **leaves)
        colour.square().sum().backward()
        grads = [leaves[k].grad.cpu() for k in ("albedo", "metallic", "roughness", "normal")]
        results[device] = (colour.detach().cpu(), grads)
    assert torch.allclose(results["cuda"][0], results["cpu"][0], atol=1e-5, rtol=1e-4)
    for cuda, cpu in zip(results["cuda"][1], results["cpu"][1], strict=True):
        assert torch.allclose(cuda, cpu, atol=1e-3, rtol=1e-3)
