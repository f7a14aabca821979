"""The PyTorch hash grid against a plain float64 reference of tiny-cuda-nn's formula and layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio_dreamfusion.networks.hashgrid import PRIMES, HashGrid, grid_layout


def reference_hashgrid(
    x: torch.Tensor,
    table: torch.Tensor,
    n_levels: int,
    n_features: int,
    log2_hashmap_size: int,
    base_resolution: int,
    per_level_scale: float,
) -> torch.Tensor:
    """tcnn's grid encoding written plainly: loops over levels and corners, float64 values.

    ``x``: float64 [N, d] (holding float32 values); ``table``: float64 flat parameters.
    """
    n_points, d = x.shape
    log2_scale = np.log2(np.float32(per_level_scale), dtype=np.float32)
    rows = table.view(-1, n_features)
    offset = 0
    outputs = []
    for level in range(n_levels):
        growth = np.exp2(np.float32(level) * log2_scale, dtype=np.float32)
        scale = float(np.float32(growth) * np.float32(base_resolution) - np.float32(1.0))
        resolution = int(np.ceil(scale)) + 1
        size = min(-(-(resolution**d) // 8) * 8, 2**log2_hashmap_size)
        # fmaf(scale, x, 0.5f): exact in float64, one rounding to float32.
        pos = (x * scale + 0.5).float().double()
        cell = torch.floor(pos)
        frac = pos - cell
        cell_np = cell.detach().numpy().astype(np.int64)
        level_out = torch.zeros(n_points, n_features, dtype=torch.float64)
        for corner in range(2**d):
            weight = torch.ones(n_points, dtype=torch.float64)
            coords = []
            for i in range(d):
                if corner & (1 << i):
                    weight = weight * frac[:, i]
                    coords.append(cell_np[:, i] + 1)
                else:
                    weight = weight * (1 - frac[:, i])
                    coords.append(cell_np[:, i])
            if resolution**d <= size:  # dense: x + y * res + z * res^2, then % size
                index = np.zeros(n_points, dtype=np.int64)
                stride = 1
                for i in range(d):
                    index += coords[i] * stride
                    stride *= resolution
            else:  # uint32 XOR of coord * prime
                index = np.zeros(n_points, dtype=np.int64)
                for i in range(d):
                    index ^= (coords[i] * PRIMES[i]) & 0xFFFFFFFF
            index = (index & 0xFFFFFFFF) % size
            values = rows[torch.from_numpy(offset + index)]
            level_out = level_out + weight[:, None] * values
        outputs.append(level_out)
        offset += size
    assert offset * n_features == table.numel()
    return torch.cat(outputs, dim=1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to the largest reference magnitude."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


def make_points(d: int, n_random: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    pts = [torch.rand(n_random, d, generator=gen)]
    # Corners of the unit cube (0 and 1 in every combination), and x = 0.5, which lies exactly on
    # a cell boundary at every level when base_resolution = 2 and per_level_scale = 2.
    special = torch.tensor([0.0, 0.5, 1.0])
    mesh = torch.stack(torch.meshgrid(*[special] * d, indexing="ij"), dim=-1).reshape(-1, d)
    pts.append(mesh)
    # Mixtures of boundary and random coordinates.
    mixed = torch.rand(64, d, generator=gen)
    mixed[::2, 0] = 1.0
    mixed[1::2, -1] = 0.0
    pts.append(mixed)
    return torch.cat(pts)


CONFIGS = [
    # (d, n_levels, F, log2, base, per_level_scale): each has dense and hashed levels
    pytest.param(3, 8, 2, 12, 2, 2.0, id="3d-base2-boundaries"),
    pytest.param(3, 6, 2, 12, 16, 1.447269237440378, id="3d-threestudio-scale"),
    pytest.param(2, 6, 4, 10, 8, 1.7, id="2d-4features"),
]


@pytest.mark.parametrize(("d", "levels", "feats", "log2", "base", "pls"), CONFIGS)
def test_matches_reference_values_and_gradients(
    d: int, levels: int, feats: int, log2: int, base: int, pls: float
) -> None:
    torch.manual_seed(0)
    grid = HashGrid(d, levels, feats, log2, base, pls)
    layout = grid.layout
    assert any(layout.dense) and not all(layout.dense)
    with torch.no_grad():  # values of order 1 make relative errors meaningful
        grid.params.uniform_(-1.0, 1.0)
    x = make_points(d, 2000, seed=1)

    x32 = x.clone().requires_grad_(True)
    out = grid(x32)
    assert out.dtype == torch.float32 and out.shape == (x.shape[0], levels * feats)
    upstream = torch.randn_like(out)
    g_x, g_table = torch.autograd.grad(out, (x32, grid.params), upstream)

    x64 = x.double().requires_grad_(True)
    table64 = grid.params.detach().double().requires_grad_(True)
    ref = reference_hashgrid(x64, table64, levels, feats, log2, base, pls)
    r_x, r_table = torch.autograd.grad(ref, (x64, table64), upstream.double())

    assert rel_err(out, ref) < 1e-5
    assert rel_err(g_table, r_table) < 1e-5
    assert rel_err(g_x, r_x) < 1e-5


@pytest.mark.parametrize(
    ("d", "levels", "feats", "log2", "base", "pls"),
    [*CONFIGS, pytest.param(3, 5, 1, 9, 3, 1.9, id="3d-1feature")],
)
def test_explicit_jacobian_matches_the_reference(
    d: int, levels: int, feats: int, log2: int, base: int, pls: float
) -> None:
    """forward_with_jacobian: the encoding, d encoding / dx against the float64 reference's
    autograd, and the table gradient of a loss on both outputs against the reference's."""
    torch.manual_seed(0)
    grid = HashGrid(d, levels, feats, log2, base, pls)
    with torch.no_grad():
        grid.params.uniform_(-1.0, 1.0)
    x = make_points(d, 500, seed=2)
    encoded, jac = grid.forward_with_jacobian(x)
    assert jac.shape == (x.shape[0], d, levels * feats)

    x64 = x.double().requires_grad_(True)
    table64 = grid.params.detach().double().requires_grad_(True)
    ref = reference_hashgrid(x64, table64, levels, feats, log2, base, pls)
    columns = [
        torch.autograd.grad(ref[:, k].sum(), x64, create_graph=True)[0] for k in range(ref.shape[1])
    ]
    ref_jac = torch.stack(columns, dim=-1)  # [N, d, out]
    assert rel_err(encoded, ref) < 1e-5
    assert rel_err(jac, ref_jac) < 1e-5

    up_enc, up_jac = torch.randn_like(encoded), torch.randn_like(jac)
    (g_table,) = torch.autograd.grad((encoded * up_enc).sum() + (jac * up_jac).sum(), grid.params)
    ref_loss = (ref * up_enc.double()).sum() + (ref_jac * up_jac.double()).sum()
    (r_table,) = torch.autograd.grad(ref_loss, table64)
    assert rel_err(g_table, r_table) < 1e-5


def test_explicit_jacobian_refuses_inputs_that_need_grad() -> None:
    grid = HashGrid(3, 4, 2, 10, 4, 2.0)
    with pytest.raises(ValueError, match="no gradient to its input"):
        grid.forward_with_jacobian(torch.rand(5, 3, requires_grad=True))
    with torch.no_grad():  # no gradient is asked for: fine
        assert grid.forward_with_jacobian(torch.rand(5, 3, requires_grad=True))[1].shape == (
            5,
            3,
            8,
        )


def test_default_layout_matches_tcnn() -> None:
    """The levels tcnn builds for threestudio's default grid (16 levels, base 16, log2 19)."""
    layout = grid_layout(3, 16, 2, 19, 16, 1.447269237440378)
    assert layout.resolutions == (
        16, 24, 34, 49, 71, 102, 148, 213, 308, 446, 646, 934, 1352, 1956, 2831, 4096,
    )  # fmt: skip
    assert layout.sizes == (4096, 13824, 39304, 117656, 357912) + (524288,) * 11
    assert layout.offsets == (
        0, 4096, 17920, 57224, 174880, 532792, 1057080, 1581368, 2105656, 2629944, 3154232,
        3678520, 4202808, 4727096, 5251384, 5775672, 6299960,
    )  # fmt: skip
    assert layout.dense == (True,) * 5 + (False,) * 11
    assert layout.n_params == 6299960 * 2 == 12599920
    assert layout.scales[0] == 15.0
    grid = HashGrid(3, 16, 2, 19, 16, 1.447269237440378)
    assert grid.params.shape == (12599920,)
    assert list(grid.state_dict()) == ["params"]  # the name and size of tcnn's parameter
    assert float(grid.params.detach().abs().max()) <= 1e-4  # tcnn's uniform(-1e-4, 1e-4)


def test_layout_rules() -> None:
    # per_level_scale 2, base 16: resolution 16 * 2^l (scale 16 * 2^l - 1, exactly).
    layout = grid_layout(3, 4, 2, 14, 16, 2.0)
    assert layout.scales == (15.0, 31.0, 63.0, 127.0)
    assert layout.resolutions == (16, 32, 64, 128)
    # 16^3 = 4096 <= 2^14 dense; 32^3 = 32768 > 16384 hashed; sizes capped at 2^14.
    assert layout.sizes == (4096, 16384, 16384, 16384)
    assert layout.dense == (True, False, False, False)
    # Sizes round up to a multiple of 8: 3^3 = 27 -> 32 (base 3, scale 2 is exact).
    small = grid_layout(3, 2, 1, 19, 3, 2.0)
    assert small.resolutions == (3, 6)
    assert small.sizes == (32, 216)
    assert small.dense == (True, True)


def test_primes() -> None:
    assert PRIMES[:3] == (1, 2654435761, 805459861)
    assert PRIMES == (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)


def test_hashed_corner_index_by_hand() -> None:
    """One level, a point inside the cell with lower corner (7, 3, 5): each feature is its row."""
    grid = HashGrid(3, 1, 1, 4, 16, 2.0)  # resolution 16, 16^3 > 16 entries: hashed
    assert grid.layout.dense == (False,)
    with torch.no_grad():
        grid.params.copy_(torch.arange(16, dtype=torch.float32))
    # pos = 15 x + 0.5 = (7, 3, 5) exactly -> weight 1 on the lower corner.
    x = torch.tensor([[6.5 / 15, 2.5 / 15, 4.5 / 15]], dtype=torch.float64).float()
    pos = (x.double() * 15 + 0.5).float()
    assert torch.equal(torch.floor(pos), pos)
    expected = (7 ^ (3 * 2654435761) ^ (5 * 805459861)) & 0xFFFFFFFF
    assert grid(x).item() == float(expected % 16)


def test_double_backward_reaches_the_table() -> None:
    """Analytic normals: d(output)/dx with create_graph, then a loss on it back to the table."""
    torch.manual_seed(0)
    grid = HashGrid(3, 4, 2, 10, 4, 2.0)
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    x = torch.rand(50, 3, requires_grad=True)
    (normal,) = torch.autograd.grad(grid(x).sum(), x, create_graph=True)
    normal.square().sum().backward()
    assert grid.params.grad is not None and grid.params.grad.abs().sum() > 0


def test_autocast_and_empty_input() -> None:
    grid = HashGrid(3, 4, 2, 10, 4, 2.0)
    x = torch.rand(10, 3)
    plain = grid(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = grid(x)
    assert mixed.dtype == torch.float32
    assert torch.equal(plain, mixed)
    assert grid(torch.zeros(0, 3)).shape == (0, 8)
    with pytest.raises(ValueError, match="expects input"):
        grid(torch.zeros(4, 2))


FUSED_CONFIGS = [
    pytest.param(3, 8, 2, 12, 2, 2.0, id="base2-boundaries"),
    pytest.param(3, 16, 2, 19, 16, 1.447269237440378, id="threestudio-default"),
    pytest.param(3, 6, 4, 10, 8, 1.7, id="4features"),
    pytest.param(3, 5, 1, 9, 3, 1.9, id="1feature"),
]


@pytest.mark.gpu
@pytest.mark.parametrize(("d", "levels", "feats", "log2", "base", "pls"), FUSED_CONFIGS)
def test_fused_triton_kernels_match_the_pytorch_ops(
    d: int, levels: int, feats: int, log2: int, base: int, pls: float
) -> None:
    """On CUDA: the fused kernels' encoding, Jacobian and table gradient (of a loss on both)
    equal the PyTorch ops' (float32 rounding; the gradient is summed by atomics)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    plain = HashGrid(d, levels, feats, log2, base, pls).cuda()
    fused = HashGrid(d, levels, feats, log2, base, pls, fused=True).cuda()
    with torch.no_grad():
        plain.params.uniform_(-1.0, 1.0)
        fused.params.copy_(plain.params)
    x = torch.cat([make_points(d, 20000, seed=3), torch.rand(50000, 3)]).cuda()
    assert fused._fused_kernel_applies(x) and not plain._fused_kernel_applies(x)
    outputs = []
    for grid in (plain, fused):
        encoded, jac = grid.forward_with_jacobian(x)
        torch.manual_seed(1)
        # randn, not randn_like: the PyTorch path's Jacobian may be a strided view (F = 1), and
        # randn_like would lay the same random stream out in another order.
        up_enc = torch.randn(encoded.shape, device=x.device)
        up_jac = torch.randn(jac.shape, device=x.device)
        loss = (encoded * up_enc).sum() + (jac * up_jac).sum()
        (g_table,) = torch.autograd.grad(loss, grid.params)
        (g_forward,) = torch.autograd.grad((grid(x) * up_enc).sum(), grid.params)
        outputs.append((encoded, jac, g_table, g_forward))
    for name, want, got in zip(
        ("encoding", "jacobian", "grad", "grad of forward"), *outputs, strict=True
    ):
        # gradients are summed by atomics in any order: float32 rounding of long sums
        assert rel_err(got, want) < (1e-4 if name.startswith("grad") else 1e-5), name
    empty = fused.forward_with_jacobian(torch.zeros(0, 3, device="cuda"))
    assert empty[0].shape == (0, levels * feats) and empty[1].shape == (0, 3, levels * feats)
