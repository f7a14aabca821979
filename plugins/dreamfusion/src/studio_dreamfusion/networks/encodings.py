"""Input encodings built from tiny-cuda-nn-style configs: hash grids, spherical harmonics, frequency.

:func:`build_encoding` takes the same dictionaries as tiny-cuda-nn / threestudio configs
(``otype`` plus that encoding's keys, with tcnn's defaults for omitted keys) and returns a module
with ``n_output_dims``. Inputs are in ``[0, 1]`` (tcnn's convention); outputs are float32.

Facts checked against NVlabs/tiny-cuda-nn (``encodings/spherical_harmonics.h``,
``encodings/frequency.h``, ``src/encoding.cu``):

* SphericalHarmonics maps each input ``v -> 2v - 1`` and writes ``degree**2`` values: band ``l``
  at ``l*l + l + m`` for ``m = -l..l``, the real SH basis with the Condon-Shortley phase
  (``Y_1^{-1} = -0.4886 y``, ``Y_1^0 = 0.4886 z``, ``Y_1^1 = -0.4886 x``, ...) evaluated as
  polynomials (``Y_2^0 = 0.9462 z^2 - 0.3154``, not the homogeneous form); degree 1..8, default 4.
* Frequency writes, for each input dimension in turn, ``sin(2^k pi x + (j % 2) pi / 2)`` for
  ``j = 0 .. 2 n_frequencies - 1`` and ``k = j // 2`` (sin/cos interleaved per frequency);
  default ``n_frequencies`` 12.
* Grid defaults: 16 levels, 2 features, log2_hashmap_size 19, base_resolution 16,
  per_level_scale 2.0.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Literal

import attrs
import numpy as np
import torch
from numpy.polynomial import legendre, polynomial
from torch import nn

from studio.api import ConfigError, Updateable, structure
from studio.api import choose_backend as choose
from studio_dreamfusion.networks.hashgrid import HashGrid

#: ``triton`` is studio's PyTorch hash grid with fused Triton kernels on CUDA; it changes hash
#: grids only (other encodings have no fused form and run as ``torch``).
Backend = Literal["auto", "torch", "triton", "tinycudann"]


# -- configs -------------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class HashGridConfig:
    """``otype: HashGrid`` (tcnn's ``Grid`` with ``type: Hash``); tcnn's defaults."""

    otype: str = "HashGrid"
    """The encoding, matched case-insensitively: ``HashGrid``, ``ProgressiveBandHashGrid``,
    ``SphericalHarmonics`` or ``Frequency``."""
    n_levels: int = 16
    """Grid levels (at least 1); the encoding has ``n_levels * n_features_per_level`` outputs."""
    n_features_per_level: int = 2
    """Features stored per grid vertex and level: 1, 2, 4 or 8."""
    log2_hashmap_size: int = 19
    """log2 of the hash table's entries per level (3..30); coarse levels that fit are dense."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level (at least 1)."""
    per_level_scale: float = 2.0
    """Resolution growth factor from one level to the next (positive; the finest level is about
    ``base_resolution * per_level_scale^(n_levels - 1)``)."""
    include_xyz: bool = False
    """Prepend the input mapped to ``[-1, 1]`` (``2x - 1``) to the encoding's outputs."""
    backend: Backend = "auto"
    """Implementation: ``torch``, ``triton`` (fused kernels on CUDA), ``tinycudann``, or ``auto``
    (tiny-cuda-nn, then triton, on CUDA when installed; else torch)."""


@attrs.define(kw_only=True)
class ProgressiveBandHashGridConfig(HashGridConfig):
    """A hash grid whose finer levels are switched on over training (threestudio's keys)."""

    otype: str = "ProgressiveBandHashGrid"
    """The encoding, matched case-insensitively (here ``ProgressiveBandHashGrid``)."""
    start_level: int = 8
    """Levels enabled from the start (the rest output zeros until enabled)."""
    start_step: int = 2000
    """Training step from which further levels are enabled."""
    update_steps: int = 500
    """Steps between enabling successive levels (at least 1)."""


@attrs.define(kw_only=True)
class SphericalHarmonicsConfig:
    """``otype: SphericalHarmonics``: tiny-cuda-nn's real spherical harmonics of a direction."""

    otype: str = "SphericalHarmonics"
    """The encoding, matched case-insensitively (here ``SphericalHarmonics``)."""
    degree: int = 4
    """Number of bands, 1..8; the encoding has ``degree**2`` outputs (3: 9)."""
    include_xyz: bool = False
    """Prepend the input mapped to ``[-1, 1]`` (``2x - 1``) to the encoding's outputs."""
    backend: Backend = "auto"
    """Implementation: ``tinycudann``, or PyTorch for ``torch`` and ``triton``; ``auto`` picks
    tiny-cuda-nn on CUDA when installed."""


@attrs.define(kw_only=True)
class FrequencyConfig:
    """``otype: Frequency``: tiny-cuda-nn's sin/cos encoding at octave frequencies."""

    otype: str = "Frequency"
    """The encoding, matched case-insensitively (here ``Frequency``)."""
    n_frequencies: int = 12
    """Frequencies per input dimension (at least 1): ``sin``/``cos(2^k pi x)`` for ``k <
    n_frequencies``, so ``2 * n_frequencies`` outputs per dimension."""
    include_xyz: bool = False
    """Prepend the input mapped to ``[-1, 1]`` (``2x - 1``) to the encoding's outputs."""
    backend: Backend = "auto"
    """Implementation: ``tinycudann``, or PyTorch for ``torch`` and ``triton``; ``auto`` picks
    tiny-cuda-nn on CUDA when installed."""


CONFIGS: dict[str, type] = {
    "HashGrid": HashGridConfig,
    "ProgressiveBandHashGrid": ProgressiveBandHashGridConfig,
    "SphericalHarmonics": SphericalHarmonicsConfig,
    "Frequency": FrequencyConfig,
}


# -- modules -------------------------------------------------------------------------------------


class SphericalHarmonics(nn.Module):
    """tcnn's real spherical harmonics of a direction given in ``[0, 1]^3`` (``v -> 2v - 1``).

    ``forward(d)``: ``[N, 3] -> [N, degree**2]`` float32, differentiable in ``d``.
    """

    def __init__(self, degree: int = 4, n_input_dims: int = 3) -> None:
        super().__init__()
        if n_input_dims != 3:
            raise ValueError("SphericalHarmonics encodes 3D directions (n_input_dims must be 3)")
        if not 1 <= degree <= 8:
            raise ValueError(f"SphericalHarmonics: degree must be 1..8, got {degree}")
        self.degree = degree
        self.n_input_dims = 3
        self.n_output_dims = degree * degree
        # Y_l^m = K_lm * A_m(x, y) * Q_l^|m|(z): A_m = Re (x + iy)^m for m > 0, Im (x + iy)^|m|
        # for m < 0, 1 for m = 0; Q_l^m(z) = (-1)^m d^m/dz^m P_l(z) (P_l: Legendre polynomial);
        # K_lm = sqrt((2l+1)/(4 pi) (l-|m|)!/(l+|m|)!), times sqrt(2) for m != 0.
        terms: list[tuple[int, list[float]]] = []  # per output: (m, z-coefficients * K)
        for band in range(degree):
            p_l = legendre.leg2poly([0.0] * band + [1.0])
            for m in range(-band, band + 1):
                k = abs(m)
                norm = math.sqrt(
                    (2 * band + 1)
                    / (4 * math.pi)
                    * math.factorial(band - k)
                    / math.factorial(band + k)
                )
                if m != 0:
                    norm *= math.sqrt(2.0)
                q = polynomial.polyder(p_l, k) * ((-1.0) ** k) if k else np.asarray(p_l)
                terms.append((m, [float(c) * norm for c in np.atleast_1d(q)]))

        # Evaluated as K*Q(z) (Horner, one row of coefficients per power of z) times the A_m
        # column picked from [1, Re (x+iy)^1.., Im (x+iy)^1..]: a fixed number of tensor ops
        # for any degree (the background encodes every ray of every step).
        coefficients = torch.zeros(degree, self.n_output_dims)
        pick = []
        for column, (m, zs) in enumerate(terms):
            coefficients[: len(zs), column] = torch.tensor(zs)
            pick.append(0 if m == 0 else (m if m > 0 else degree - 1 - m))
        # Rows from the highest power of z down, as Horner's scheme consumes them.
        self.register_buffer("_horner", coefficients.flip(0).contiguous(), persistent=False)
        self.register_buffer("_a_index", torch.tensor(pick), persistent=False)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=d.device.type, enabled=False):
            v = d.float() * 2.0 - 1.0
            x, y, z = v.unbind(-1)
            z = z.unsqueeze(-1)
            q = self._horner[0].expand(*z.shape[:-1], -1)
            for row in self._horner[1:]:
                q = torch.addcmul(row, q, z)
            if self.degree == 1:
                return q
            # (x + iy)^m for m = 1..degree-1 by one cumulative product.
            powers = torch.cumprod(
                torch.complex(x, y).unsqueeze(-1).expand(*x.shape, self.degree - 1), dim=-1
            )
            a = torch.cat([torch.ones_like(z), powers.real, powers.imag], dim=-1)
            return q * a[..., self._a_index]


class Frequency(nn.Module):
    """tcnn's ``Frequency`` encoding: per input dim ``sin(2^k pi x)``, ``cos(2^k pi x)``, k < n.

    ``forward(x)``: ``[N, d] -> [N, d * 2 * n_frequencies]`` float32.
    """

    def __init__(self, n_input_dims: int, n_frequencies: int = 12) -> None:
        super().__init__()
        if n_frequencies < 1:
            raise ValueError(f"Frequency: n_frequencies must be positive, got {n_frequencies}")
        self.n_input_dims = n_input_dims
        self.n_frequencies = n_frequencies
        self.n_output_dims = n_input_dims * n_frequencies * 2
        j = torch.arange(2 * n_frequencies)
        self.register_buffer("_scales", torch.exp2((j // 2).float()), persistent=False)
        self.register_buffer("_phases", (j % 2).float() * (math.pi / 2), persistent=False)

    def extra_repr(self) -> str:
        return f"n_input_dims={self.n_input_dims}, n_frequencies={self.n_frequencies}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            arg = (x.unsqueeze(-1) * self._scales) * math.pi + self._phases  # [N, d, 2n]
            return torch.sin(arg).reshape(*x.shape[:-1], self.n_output_dims)


class ProgressiveBandHashGrid(nn.Module, Updateable):
    """A hash grid (PyTorch or tcnn) whose output is masked to its first ``current_level`` levels.

    ``current_level = min(start_level + max(step - start_step, 0) // update_steps, n_levels)``
    after :meth:`update_step`; the mask only grows. Unlike threestudio (whose mask is all zeros
    until the first ``update_step``), the mask starts with ``start_level`` levels on.
    """

    def __init__(
        self,
        encoding: nn.Module,
        n_levels: int,
        n_features_per_level: int,
        start_level: int = 8,
        start_step: int = 2000,
        update_steps: int = 500,
    ) -> None:
        """Mask the output of ``encoding`` (a hash grid of ``n_levels`` x ``n_features_per_level``)."""
        super().__init__()
        if update_steps < 1:
            raise ValueError(
                f"ProgressiveBandHashGrid: update_steps must be >= 1, got {update_steps}"
            )
        self.encoding = encoding
        self.n_input_dims = encoding.n_input_dims
        self.n_output_dims = n_levels * n_features_per_level
        self.n_levels = n_levels
        self.n_features_per_level = n_features_per_level
        self.start_level = start_level
        self.start_step = start_step
        self.update_steps = update_steps
        self.current_level = 0
        self.register_buffer("mask", torch.zeros(self.n_output_dims), persistent=False)
        self._grow_to(min(max(start_level, 0), n_levels))

    def levels_at(self, global_step: int) -> int:
        """How many levels the schedule enables at ``global_step``."""
        grown = max(global_step - self.start_step, 0) // self.update_steps
        return min(self.start_level + grown, self.n_levels)

    def _grow_to(self, level: int) -> None:
        if level <= self.current_level:
            return
        self.current_level = level
        mask = torch.zeros_like(self.mask)
        mask[: level * self.n_features_per_level] = 1.0
        self.mask = mask  # a new tensor: graphs that saved the old mask stay valid

    def update_step(self, epoch: int, global_step: int, on_load_weights: bool = False) -> None:
        self._grow_to(self.levels_at(global_step))

    def graph_state(self) -> tuple:
        """The enabled levels: a graph keeps the mask tensor it was captured with."""
        return (self.current_level,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoding(x).float() * self.mask

    def forward_with_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked encoding ``[N, n_out]`` and spatial Jacobian ``[N, n_input_dims, n_out]``."""
        encoded, jacobian = self.encoding.forward_with_jacobian(x)
        return encoded * self.mask, jacobian * self.mask


class CompositeEncoding(nn.Module):
    """``[2x - 1, encoding(x)]`` (threestudio's ``include_xyz``): ``n_input_dims`` more outputs."""

    def __init__(self, encoding: nn.Module, n_input_dims: int) -> None:
        super().__init__()
        self.encoding = encoding
        self.n_input_dims = n_input_dims
        self.n_output_dims = n_input_dims + int(encoding.n_output_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encoding(x)
        return torch.cat([x.to(encoded.dtype) * 2.0 - 1.0, encoded], dim=-1)

    def forward_with_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[2x - 1, encoding(x)]`` and its spatial Jacobian ``[N, n_input_dims, n_out]``."""
        encoded, jacobian = self.encoding.forward_with_jacobian(x)
        d = self.n_input_dims
        xyz_jacobian = 2.0 * torch.eye(d, device=x.device, dtype=jacobian.dtype)
        xyz_jacobian = xyz_jacobian.expand(x.shape[0], d, d)
        return (
            torch.cat([x.to(encoded.dtype) * 2.0 - 1.0, encoded], dim=-1),
            torch.cat([xyz_jacobian, jacobian], dim=-1),
        )


def supports_jacobian(module: nn.Module) -> bool:
    """Whether ``module`` gives its spatial Jacobian explicitly (``forward_with_jacobian``)."""
    if isinstance(module, (ProgressiveBandHashGrid, CompositeEncoding)):
        return supports_jacobian(module.encoding)
    return isinstance(module, HashGrid)


# -- tiny-cuda-nn ---------------------------------------------------------------------------------


def _as_float32(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def tcnn_seed() -> int:
    """A seed for a tinycudann module's initial parameters, drawn from torch's (CPU) generator:
    tcnn's default is one fixed seed, which would start every particle (and every run seed) the
    same."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def tcnn_encoding(n_input_dims: int, tcnn_config: dict[str, Any]) -> nn.Module:
    """``tinycudann.Encoding`` (fp32 parameters, float32 output); imported only when used.

    Its parameter is called ``params`` with the same layout as :class:`HashGrid`'s, so the two
    backends' state dicts are interchangeable for hash grids. Seeded by :func:`tcnn_seed`.
    """
    import tinycudann

    module = tinycudann.Encoding(n_input_dims, tcnn_config, seed=tcnn_seed(), dtype=torch.float32)
    module.register_forward_hook(_as_float32)
    return module


def resolve_backend(requested: str, path: str, cuda: bool | None = None) -> str:
    """``torch`` or ``tinycudann`` for ``requested`` (``auto`` picks tcnn only with CUDA)."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    try:
        return choose("hash-grid", requested, cuda=cuda)
    except ConfigError as exc:
        raise ConfigError(f"{path}.backend: {exc}") from None


# -- builder --------------------------------------------------------------------------------------


def _fail(path: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"Invalid configuration: {path}.{key}: {message}.")


def _canonical_otype(config: Any) -> Any:
    """``config``'s ``otype`` spelled as in :data:`CONFIGS` when it names one (tcnn matches
    otype names case-insensitively; so do we), else as a string (None when missing)."""
    otype = config.get("otype")
    if otype is None:
        return None
    return {name.lower(): name for name in CONFIGS}.get(str(otype).lower(), str(otype))


def find_encoding_config_class(config: Any) -> type | None:
    """The attrs config class of the encoding ``config`` describes, or None when ``config`` is
    not a mapping or its ``otype`` is missing or unknown (:func:`encoding_config_class` says
    why)."""
    if not isinstance(config, dict):
        return None
    return CONFIGS.get(_canonical_otype(config))


def encoding_config_class(config: Any, path: str = "encoding") -> type:
    """The attrs config class (one of :data:`CONFIGS`) of the encoding ``config`` describes,
    chosen by its ``otype`` (case-insensitive); :class:`ConfigError` naming ``path`` when
    ``config`` is not a mapping or its ``otype`` is missing or unknown."""
    if not isinstance(config, dict):
        raise ConfigError(
            f"Invalid configuration: {path} must be a mapping with an 'otype', got {config!r}."
        )
    otype = _canonical_otype(config)
    if otype not in CONFIGS:
        names = ", ".join(CONFIGS)
        if otype is None:
            raise _fail(path, "otype", f"a required value is missing (one of {names})")
        close = difflib.get_close_matches(str(otype), list(CONFIGS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(path, "otype", f"unknown encoding {otype!r}{hint}; choose one of {names}")
    return CONFIGS[otype]


def check_encoding_config(cfg: Any, path: str, n_input_dims: int | None = None) -> None:
    """The checks of a structured encoding config beyond its types that :func:`build_encoding`
    makes (:class:`ConfigError` naming ``path``); ``n_input_dims`` None skips the input check.
    The backend's availability is not checked here: it depends on the machine, not the config."""
    if isinstance(cfg, HashGridConfig):  # also ProgressiveBandHashGridConfig
        _check_grid(cfg, path)
        if isinstance(cfg, ProgressiveBandHashGridConfig) and cfg.update_steps < 1:
            raise _fail(path, "update_steps", f"must be at least 1, got {cfg.update_steps}")
    elif isinstance(cfg, SphericalHarmonicsConfig):
        if n_input_dims is not None and n_input_dims != 3:
            raise ConfigError(
                f"Invalid configuration: {path}: SphericalHarmonics encodes 3D directions, "
                f"got {n_input_dims} input dims."
            )
        if not 1 <= cfg.degree <= 8:
            raise _fail(path, "degree", f"must be 1..8 (as in tiny-cuda-nn), got {cfg.degree}")
    elif isinstance(cfg, FrequencyConfig):
        if cfg.n_frequencies < 1:
            raise _fail(path, "n_frequencies", f"must be positive, got {cfg.n_frequencies}")


def validate_encoding_config(config: Any, path: str, n_input_dims: int | None = None) -> Any:
    """``config`` structured strictly into its attrs class and checked as :func:`build_encoding`
    would (every :class:`ConfigError` it raises for a config value, named by ``path``)."""
    cfg = structure(config, encoding_config_class(config, path), path)
    check_encoding_config(cfg, path, n_input_dims)
    return cfg


def build_encoding(
    n_input_dims: int, config: dict[str, Any], path: str = "encoding", *, cuda: bool | None = None
) -> nn.Module:
    """The encoding ``config`` describes (``otype`` in :data:`CONFIGS`), with ``n_output_dims``.

    Keys are validated strictly (unknown or mistyped keys raise :class:`ConfigError` naming
    ``path``). ``backend`` (auto | torch | tinycudann) picks tiny-cuda-nn when it is installed and
    CUDA is available (``cuda`` overrides the check); otherwise the PyTorch implementations here.
    """
    cfg = structure(config, encoding_config_class(config, path), path)
    backend = resolve_backend(cfg.backend, path, cuda)
    check_encoding_config(cfg, path, n_input_dims)
    encoding: nn.Module
    if isinstance(cfg, HashGridConfig):  # also ProgressiveBandHashGridConfig
        grid_keys = {
            "n_levels": cfg.n_levels,
            "n_features_per_level": cfg.n_features_per_level,
            "log2_hashmap_size": cfg.log2_hashmap_size,
            "base_resolution": cfg.base_resolution,
            "per_level_scale": cfg.per_level_scale,
        }
        if backend == "tinycudann":
            tcnn_otype = {"otype": "Grid", "type": "Hash"}  # tcnn's name for the same grid
            grid: nn.Module = tcnn_encoding(n_input_dims, {**tcnn_otype, **grid_keys})
        else:
            grid = HashGrid(n_input_dims, **grid_keys, fused=backend == "triton")
        if isinstance(cfg, ProgressiveBandHashGridConfig):
            encoding = ProgressiveBandHashGrid(
                grid,
                cfg.n_levels,
                cfg.n_features_per_level,
                start_level=cfg.start_level,
                start_step=cfg.start_step,
                update_steps=cfg.update_steps,
            )
        else:
            encoding = grid
    elif isinstance(cfg, SphericalHarmonicsConfig):
        if backend == "tinycudann":
            encoding = tcnn_encoding(3, {"otype": "SphericalHarmonics", "degree": cfg.degree})
        else:
            encoding = SphericalHarmonics(cfg.degree)
    else:
        assert isinstance(cfg, FrequencyConfig)
        if backend == "tinycudann":
            tcnn_cfg = {"otype": "Frequency", "n_frequencies": cfg.n_frequencies}
            encoding = tcnn_encoding(n_input_dims, tcnn_cfg)
        else:
            encoding = Frequency(n_input_dims, cfg.n_frequencies)
    if cfg.include_xyz:
        encoding = CompositeEncoding(encoding, n_input_dims)
    return encoding


def _check_grid(cfg: HashGridConfig, path: str) -> None:
    if cfg.n_levels < 1:
        raise _fail(path, "n_levels", f"must be at least 1, got {cfg.n_levels}")
    if cfg.n_features_per_level not in (1, 2, 4, 8):
        raise _fail(
            path,
            "n_features_per_level",
            f"must be 1, 2, 4 or 8 (as in tiny-cuda-nn), got {cfg.n_features_per_level}",
        )
    if not 3 <= cfg.log2_hashmap_size <= 30:
        raise _fail(path, "log2_hashmap_size", f"must be 3..30, got {cfg.log2_hashmap_size}")
    if cfg.base_resolution < 1:
        raise _fail(path, "base_resolution", f"must be at least 1, got {cfg.base_resolution}")
    if cfg.per_level_scale <= 0:
        raise _fail(path, "per_level_scale", f"must be positive, got {cfg.per_level_scale}")
