"""Encodings (spherical harmonics, frequency, progressive hash grid), their configs, and the MLPs."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from torch import nn

from studio.base import Updateable
from studio.errors import ConfigError
from studio_dreamfusion.networks.encodings import (
    CompositeEncoding,
    Frequency,
    ProgressiveBandHashGrid,
    SphericalHarmonics,
    build_encoding,
    supports_jacobian,
)
from studio_dreamfusion.networks.hashgrid import HashGrid
from studio_dreamfusion.networks.mlp import ACTIVATIONS, VanillaMLP, build_mlp

GRID = {
    "otype": "HashGrid",
    "n_levels": 16,
    "n_features_per_level": 2,
    "log2_hashmap_size": 19,
    "base_resolution": 16,
    "per_level_scale": 1.447269237440378,
}
SMALL_GRID = {**GRID, "n_levels": 4, "log2_hashmap_size": 10}


# -- spherical harmonics --------------------------------------------------------------------------


def sphere_quadrature(n_z: int = 16, n_phi: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre in z times uniform in phi: exact for polynomials of degree < 2 * n_z."""
    z, wz = np.polynomial.legendre.leggauss(n_z)
    phi = np.arange(n_phi) * 2 * np.pi / n_phi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    r = np.sqrt(1 - zz**2)
    dirs = np.stack([r * np.cos(pp), r * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    weights = (wz[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None, :]).reshape(-1)
    return dirs, weights


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 8])
def test_sh_orthonormal(degree: int) -> None:
    dirs, weights = sphere_quadrature()
    sh = SphericalHarmonics(degree)
    values = sh(torch.from_numpy((dirs + 1) / 2).float()).double().numpy()
    assert values.shape == (dirs.shape[0], degree**2)
    gram = values.T @ (values * weights[:, None])
    assert np.abs(gram - np.eye(degree**2)).max() < 1e-5


def test_sh_hand_values() -> None:
    """tcnn's basis (constants and signs from its spherical_harmonics.h) at one direction."""
    d = torch.tensor([[0.3, 0.7, 0.9]])
    x, y, z = (2 * d[0] - 1).tolist()  # the encoding maps [0, 1] -> [-1, 1]
    out = SphericalHarmonics(4)(d)[0].double().numpy()
    assert out.shape == (16,)
    expected = {
        0: 0.28209479177387814,
        1: -0.48860251190291987 * y,
        2: 0.48860251190291987 * z,
        3: -0.48860251190291987 * x,
        4: 1.0925484305920792 * x * y,
        5: -1.0925484305920792 * y * z,
        6: 0.94617469575755997 * z * z - 0.31539156525251999,
        7: -1.0925484305920792 * x * z,
        8: 0.54627421529603959 * (x * x - y * y),
        9: 0.59004358992664352 * y * (-3 * x * x + y * y),
        12: 0.3731763325901154 * z * (5 * z * z - 3),
        13: 0.45704579946446572 * x * (1 - 5 * z * z),
        15: 0.59004358992664352 * x * (-x * x + 3 * y * y),
    }
    for index, value in expected.items():
        assert out[index] == pytest.approx(value, abs=1e-6), index
    out8 = SphericalHarmonics(8)(d)[0].double().numpy()
    x2, y2, z2 = x * x, y * y, z * z
    expected8 = {
        27: -0.48923829943525038 * y * (3 * x2 - y2) * (9 * z2 - 1),
        44: 0.46060262975746175 * (x2 - y2) * (11 * z2 * (3 * z2 - 1) - 7 * z2 + 1),
        63: 0.70716273252459627 * x * (-35 * x2 * y2**2 + 21 * x2**2 * y2 - x2**3 + 7 * y2**3),
    }
    for index, value in expected8.items():
        assert out8[index] == pytest.approx(value, abs=1e-6), index
    assert SphericalHarmonics(3).n_output_dims == 9
    assert torch.equal(SphericalHarmonics(3)(d), SphericalHarmonics(4)(d)[:, :9])


def test_sh_is_differentiable() -> None:
    d = torch.rand(8, 3, requires_grad=True)
    SphericalHarmonics(4)(d).sum().backward()
    assert d.grad is not None and torch.isfinite(d.grad).all()


# -- frequency ------------------------------------------------------------------------------------


def test_frequency_layout_and_values() -> None:
    enc = Frequency(2, n_frequencies=3)
    assert enc.n_output_dims == 12
    x = torch.tensor([[0.25, 0.1]])
    out = enc(x)[0].double()
    expected = []
    for v in (0.25, 0.1):  # per input dim: sin, cos at 2^k pi for k = 0, 1, 2
        for k in range(3):
            expected += [math.sin(2**k * math.pi * v), math.cos(2**k * math.pi * v)]
    assert out.numpy() == pytest.approx(expected, abs=1e-6)
    assert build_encoding(3, {"otype": "Frequency"}).n_output_dims == 3 * 12 * 2  # tcnn default


# -- hash grids and the builder --------------------------------------------------------------------


def test_build_hash_grid_and_include_xyz() -> None:
    grid = build_encoding(3, GRID, cuda=False)
    assert isinstance(grid, HashGrid) and grid.n_output_dims == 32
    assert grid.layout.n_params == 12599920
    composite = build_encoding(3, {**SMALL_GRID, "include_xyz": True}, cuda=False)
    assert isinstance(composite, CompositeEncoding) and composite.n_output_dims == 3 + 8
    x = torch.rand(5, 3)
    out = composite(x)
    assert torch.allclose(out[:, :3], 2 * x - 1)
    assert torch.equal(out[:, 3:], composite.encoding(x))
    assert isinstance(build_encoding(3, {"otype": "sphericalharmonics", "degree": 3}), nn.Module)


def test_progressive_band_levels_and_mask() -> None:
    cfg = {**GRID, "otype": "ProgressiveBandHashGrid", "start_level": 8, "start_step": 2000}
    enc = build_encoding(3, {**cfg, "update_steps": 500}, cuda=False)
    assert isinstance(enc, ProgressiveBandHashGrid) and isinstance(enc, Updateable)
    assert enc.n_output_dims == 32

    def enabled() -> int:
        ones = int(enc.mask.sum())
        assert torch.equal(enc.mask[:ones], torch.ones(ones))  # a prefix of whole levels
        assert ones % 2 == 0
        return ones // 2

    assert enabled() == 8  # before any step
    for step, levels in [(0, 8), (2000, 8), (2499, 8), (2500, 9), (3000, 10), (100000, 16)]:
        enc.do_update_step(0, step)
        assert enc.levels_at(step) == levels
        assert enabled() == levels, step
    enc.update_step(0, 0)  # an earlier step never shrinks the mask
    assert enabled() == 16

    enc2 = ProgressiveBandHashGrid(
        HashGrid(3, 4, 2, 10, 16, 2.0), 4, 2, start_level=1, start_step=0, update_steps=10
    )
    x = torch.rand(6, 3)
    out = enc2(x)
    assert torch.equal(out[:, 2:], torch.zeros(6, 6))
    assert torch.equal(out[:, :2], enc2.encoding(x)[:, :2])
    enc2.update_step(0, 25)
    assert (enc2(x)[:, :6] != 0).all() and (enc2(x)[:, 6:] == 0).all()


def test_config_errors_name_the_path() -> None:
    path = "system.geometry.pos_encoding_config"
    with pytest.raises(ConfigError, match=r"pos_encoding_config\.n_level\b.*n_levels"):
        build_encoding(3, {**GRID, "n_level": 16}, path)
    with pytest.raises(ConfigError, match=r"pos_encoding_config\.otype.*HashGrid"):
        build_encoding(3, {**GRID, "otype": "HashGird"}, path)
    with pytest.raises(ConfigError, match=r"pos_encoding_config\.n_levels"):
        build_encoding(3, {**GRID, "n_levels": "16"}, path)
    with pytest.raises(ConfigError, match=r"dir_encoding_config\.degre\b"):
        build_encoding(3, {"otype": "SphericalHarmonics", "degre": 3}, "dir_encoding_config")
    with pytest.raises(ConfigError, match=r"pos_encoding_config\.start_level"):
        build_encoding(3, {**GRID, "start_level": 4}, path)  # only for ProgressiveBandHashGrid
    with pytest.raises(ConfigError, match=r"pos_encoding_config\.backend"):
        build_encoding(3, {**GRID, "backend": "tinycudann"}, path, cuda=False)
    with pytest.raises(ConfigError, match=r"mlp_network_config\.n_neuron\b.*n_neurons"):
        build_mlp(8, 1, {"otype": "VanillaMLP", "n_neuron": 64}, "mlp_network_config")
    with pytest.raises(ConfigError, match=r"mlp_network_config\.activation"):
        build_mlp(8, 1, {"otype": "VanillaMLP", "activation": "Relu6"}, "mlp_network_config")


def test_torch_backend_on_cpu() -> None:
    grid = build_encoding(3, {**SMALL_GRID, "backend": "torch"}, cuda=False)
    assert isinstance(grid, HashGrid)
    assert isinstance(build_encoding(3, {**SMALL_GRID, "backend": "auto"}, cuda=False), HashGrid)


# -- MLPs -----------------------------------------------------------------------------------------

MLP = {
    "otype": "VanillaMLP",
    "activation": "ReLU",
    "output_activation": "none",
    "n_neurons": 64,
    "n_hidden_layers": 1,
}


def test_vanilla_mlp_topology() -> None:
    mlp = build_mlp(32, 1, MLP)
    assert isinstance(mlp, VanillaMLP)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 64), (64, 1)]
    assert all(m.bias is None for m in linears)
    assert not any("bias" in name for name, _ in mlp.named_parameters())
    assert mlp(torch.rand(7, 32)).shape == (7, 1)

    fused = build_mlp(
        40, 3, {**MLP, "otype": "FullyFusedMLP", "n_neurons": 16, "n_hidden_layers": 2}, cuda=False
    )
    assert isinstance(fused, VanillaMLP)  # no tinycudann here: same topology in PyTorch
    shapes = [tuple(p.shape) for p in fused.parameters()]
    assert shapes == [(16, 40), (16, 16), (3, 16)]
    assert len(list(VanillaMLP(5, 2, 8, 0).parameters())) == 1  # no hidden layer: one Linear


def test_mlp_output_activation_and_autocast() -> None:
    torch.manual_seed(0)
    mlp = build_mlp(6, 4, {**MLP, "output_activation": "Sigmoid"})
    x = torch.randn(100, 6) * 10
    plain = mlp(x)
    assert ((plain > 0) & (plain < 1)).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = mlp(x.bfloat16())
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, mlp(x.bfloat16().float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = mlp(x)
    assert torch.equal(same, plain)  # computed in float32, autocast off


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_vanilla_mlp_jacobian_is_the_chain_rule(activation: str) -> None:
    """forward_with_jacobian against autograd's Jacobian of the composed map x -> MLP(A x)."""
    torch.manual_seed(0)
    mlp = VanillaMLP(5, 2, 7, 2, activation=activation, output_activation=activation)
    mixing = torch.randn(3, 5)
    x = torch.randn(6, 3)
    out, jac = mlp.forward_with_jacobian(x @ mixing, mixing.expand(6, 3, 5))
    want = torch.func.vmap(torch.func.jacrev(lambda p: mlp(p @ mixing)))(x)  # [N, out, in]
    assert torch.allclose(out, mlp(x @ mixing))
    assert torch.allclose(jac, want.transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_vanilla_mlp_names_a_bad_activation() -> None:
    with pytest.raises(ConfigError, match="Relu6"):
        VanillaMLP(3, 1, 8, 1, activation="Relu6")
    with pytest.raises(ConfigError, match="Tanhh"):
        VanillaMLP(3, 1, 8, 0, output_activation="Tanhh")
    VanillaMLP(3, 1, 8, 0, activation="unused")  # no hidden layer: the name is never used


def test_encodings_give_their_jacobian() -> None:
    torch.manual_seed(0)
    config = {**SMALL_GRID, "otype": "ProgressiveBandHashGrid", "start_level": 2}
    for encoding in (
        build_encoding(3, config, cuda=False),
        build_encoding(3, {**SMALL_GRID, "include_xyz": True}, cuda=False),
    ):
        assert supports_jacobian(encoding)
        with torch.no_grad():
            for param in encoding.parameters():
                param.uniform_(-1, 1)
        x = torch.rand(40, 3)
        encoded, jac = encoding.forward_with_jacobian(x)
        leaf = x.clone().requires_grad_(True)
        reference = encoding(leaf)
        columns = [
            torch.autograd.grad(reference[:, k].sum(), leaf, retain_graph=True)[0]
            for k in range(reference.shape[1])
        ]
        assert torch.allclose(encoded, reference)
        assert torch.allclose(jac, torch.stack(columns, dim=-1), atol=1e-4)
    assert not supports_jacobian(build_encoding(3, {"otype": "Frequency"}, cuda=False))


def test_triton_backend_is_the_pytorch_grid_with_fused_kernels() -> None:
    """`backend: triton` (auto's choice on CUDA without tiny-cuda-nn) builds studio's grid with
    the fused kernels switched on; off CUDA it encodes with PyTorch ops, same results."""
    from studio.backends import CONCERNS

    assert [b.name for b in CONCERNS["hash-grid"]] == ["tinycudann", "triton", "torch"]
    plain = build_encoding(3, {**SMALL_GRID, "backend": "torch"}, cuda=False)
    assert isinstance(plain, HashGrid) and not plain.fused
    if importlib.util.find_spec("triton") is None:
        with pytest.raises(ConfigError, match="triton"):
            build_encoding(3, {**SMALL_GRID, "backend": "triton"}, cuda=True)
        return
    fused = build_encoding(3, {**SMALL_GRID, "backend": "triton"}, cuda=True)
    assert isinstance(fused, HashGrid) and fused.fused
    fused.load_state_dict(plain.state_dict())
    x = torch.rand(30, 3)
    assert torch.equal(fused(x), plain(x))  # CPU input: the PyTorch ops
