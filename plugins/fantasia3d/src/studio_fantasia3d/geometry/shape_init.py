"""What an ``implicit-sdf`` starts as: analytic shapes, mesh targets and the checks of their keys.

Signed distances are negative inside and positive outside, in world units.

* ``sphere`` (radius ``r``): ``|x| - r``, exact.
* ``ellipsoid`` (radii ``s``): ``(|x / s| - 1) * min(s)``. The reference uses ``|x / s| - 1``;
  the factor ``min(s)`` makes it 1-Lipschitz, so it never exceeds the true distance, reduces to
  the sphere's SDF for equal radii and is measured in world units like every other target. The
  zero set (the surface) is the same.
* ``mesh:PATH``: the mesh (scene geometries concatenated) centred at its vertex mean, rotated so
  ``shape_init_mesh_up`` becomes +z and ``shape_init_mesh_front`` +x, and scaled so its largest
  absolute coordinate is ``shape_init_params``; distances by libigl with winding-number signs.

The same analytic shapes serve as ``sdf_bias`` (added to the network's output).
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from studio.api import ConfigError, one_line

SdfFn = Callable[[torch.Tensor], torch.Tensor]
ShapeParams = Union[float, list[float], None]

ANALYTIC_SHAPES = ("sphere", "ellipsoid")
MESH_PREFIX = "mesh:"
#: Axis names of ``shape_init_mesh_up`` / ``shape_init_mesh_front`` and their unit vectors.
AXES: dict[str, tuple[float, float, float]] = {
    "+x": (1.0, 0.0, 0.0),
    "-x": (-1.0, 0.0, 0.0),
    "+y": (0.0, 1.0, 0.0),
    "-y": (0.0, -1.0, 0.0),
    "+z": (0.0, 0.0, 1.0),
    "-z": (0.0, 0.0, -1.0),
}


# -- analytic shapes -----------------------------------------------------------------------------


def sphere_sdf(points: torch.Tensor, radius: float) -> torch.Tensor:
    """``|x| - radius`` ``[N, 1]`` for ``points [N, 3]``."""
    return points.norm(dim=-1, keepdim=True) - radius


def ellipsoid_sdf(points: torch.Tensor, radii: Sequence[float]) -> torch.Tensor:
    """``(|x / radii| - 1) * min(radii)`` ``[N, 1]``: zero on the ellipsoid, 1-Lipschitz."""
    size = points.new_tensor(list(radii))
    return ((points / size).norm(dim=-1, keepdim=True) - 1.0) * float(min(radii))


def analytic_sdf(kind: str, params: ShapeParams) -> SdfFn:
    """The SDF of ``sphere`` (``params``: a radius) or ``ellipsoid`` (``params``: 3 radii)."""
    if kind == "sphere":
        radius = float(params)  # type: ignore[arg-type]
        return lambda points: sphere_sdf(points, radius)
    if kind == "ellipsoid":
        radii = [float(r) for r in params]  # type: ignore[union-attr]
        return lambda points: ellipsoid_sdf(points, radii)
    raise ValueError(f"unknown analytic shape {kind!r}; use one of {ANALYTIC_SHAPES}")


def sdf_bias(points: torch.Tensor, kind: Union[float, str], params: ShapeParams) -> torch.Tensor:
    """``sdf_bias`` at ``points [N, 3]``, ``[N, 1]``: a constant, or an analytic shape's SDF."""
    if isinstance(kind, (int, float)):
        return torch.full_like(points[..., :1], float(kind))
    return analytic_sdf(kind, params)(points)


# -- mesh targets --------------------------------------------------------------------------------


def mesh_path(shape_init: str) -> Path:
    """The file of ``mesh:PATH`` (``~`` expanded; relative to the working directory)."""
    return Path(shape_init[len(MESH_PREFIX) :]).expanduser()


def orientation(up: str, front: str) -> np.ndarray:
    """The rotation ``[3, 3]`` taking ``up`` to +z and ``front`` to +x (rows: front,
    up x front, up), so ``rotated = orientation @ v``. ``up`` and ``front`` must be orthogonal."""
    z = np.asarray(AXES[up])
    x = np.asarray(AXES[front])
    if abs(float(z @ x)) > 0.0:
        raise ValueError(f"up {up!r} and front {front!r} are not orthogonal")
    return np.stack([x, np.cross(z, x), z])


def normalise_vertices(vertices: np.ndarray, up: str, front: str, scale: float) -> np.ndarray:
    """``vertices [V, 3]`` centred at their mean, rotated by :func:`orientation` and scaled so
    the largest absolute coordinate is ``scale``."""
    centred = vertices - vertices.mean(axis=0)
    rotated = centred @ orientation(up, front).T
    extent = float(np.abs(rotated).max())
    if extent == 0.0:
        raise ValueError("the mesh's vertices all coincide")
    return rotated * (scale / extent)


def load_mesh(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` (float64) and faces ``[F, 3]`` (int64) of the mesh file ``path``;
    scene geometries are concatenated. :class:`ConfigError` naming ``key`` when the file is
    missing, unreadable or holds no triangles."""
    import trimesh

    fix = f"Set {key} to mesh:PATH with a triangle mesh file trimesh reads (.obj, .ply, .glb, .stl, .off)."
    if not path.is_file():
        raise ConfigError(f"{key}: the mesh file {str(path)!r} does not exist. {fix}")
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as exc:  # noqa: BLE001 - trimesh's loaders raise many kinds of error
        raise ConfigError(
            f"{key}: {str(path)!r} could not be read ({one_line(exc)}). {fix}"
        ) from None
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    if faces.ndim != 2 or len(faces) == 0:
        raise ConfigError(f"{key}: {str(path)!r} holds no triangles. {fix}")
    return np.asarray(mesh.vertices, dtype=np.float64), faces


class MeshSDF:
    """Signed distance to a triangle mesh (negative inside), by ``igl.signed_distance`` with
    winding-number signs (robust to small holes); evaluated exactly on every call."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float64)
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        import igl

        query = points.detach().reshape(-1, 3).double().cpu().numpy()
        distance, *_ = igl.signed_distance(
            query,
            self.vertices,
            self.faces,
            igl.SignedDistanceType.SIGNED_DISTANCE_TYPE_WINDING_NUMBER,
        )
        return torch.from_numpy(distance).to(points.device, points.dtype).reshape(-1, 1)


def target_sdf(cfg: Any, path: str) -> SdfFn:
    """The SDF ``initialize_shape`` fits, from ``cfg.shape_init`` and its parameters."""
    shape = cfg.shape_init
    if shape in ANALYTIC_SHAPES:
        return analytic_sdf(shape, cfg.shape_init_params)
    file = mesh_path(shape)
    vertices, faces = load_mesh(file, f"{path}.shape_init")
    up, front = cfg.shape_init_mesh_up, cfg.shape_init_mesh_front
    try:
        vertices = normalise_vertices(vertices, up, front, float(cfg.shape_init_params))
    except ValueError as exc:
        raise ConfigError(
            f"{path}.shape_init={shape!r}: the mesh cannot be placed ({exc}). Use a mesh with "
            "a volume, or sphere or ellipsoid."
        ) from None
    return MeshSDF(vertices, faces)


# -- config checks -------------------------------------------------------------------------------


def check_shape_init(cfg: Any, path: str) -> None:
    """``shape_init``, its parameters and orientation, ``force_shape_init`` (ConfigError)."""
    key = f"{path}.shape_init"
    shape = cfg.shape_init
    if shape is None:
        if cfg.force_shape_init:
            raise ConfigError(
                f"{path}.force_shape_init=true, but {key} is null, so there is no shape to "
                f"initialise to. Set {key} to sphere, ellipsoid or mesh:PATH, or set "
                f"{path}.force_shape_init=false."
            )
        return
    if not isinstance(shape, str) or not (
        shape in ANALYTIC_SHAPES or shape.startswith(MESH_PREFIX)
    ):
        close = difflib.get_close_matches(str(shape), [*ANALYTIC_SHAPES, "mesh:PATH"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{key}={shape!r} is not a known shape{hint}; use sphere, ellipsoid, mesh:PATH (a "
            "mesh file) or null (no initialisation)."
        )
    if shape.startswith(MESH_PREFIX):
        _check_mesh(cfg, path)
    else:
        check_shape_params(shape, cfg.shape_init_params, f"{path}.shape_init_params", key, cfg)
    if cfg.sdf_bias != 0.0:
        raise ConfigError(
            f"{key}={shape!r} together with {path}.sdf_bias={cfg.sdf_bias!r}: the initialisation "
            f"already gives the network its starting shape, and a bias would move it off that "
            f"shape (the reference says not to combine them). Set {path}.sdf_bias=0.0, or "
            f"{key}=null to start from the bias alone."
        )


def check_sdf_bias(cfg: Any, path: str) -> None:
    """``sdf_bias`` and ``sdf_bias_params`` (ConfigError)."""
    if isinstance(cfg.sdf_bias, str):
        check_shape_params(
            cfg.sdf_bias,
            cfg.sdf_bias_params,
            f"{path}.sdf_bias_params",
            f"{path}.sdf_bias",
            cfg,
        )


def check_shape_params(shape: str, params: ShapeParams, key: str, shape_key: str, cfg: Any) -> None:
    """A sphere's radius (a number) or an ellipsoid's 3 radii, each in ``(0, cfg.radius)``."""
    box = f"the box radius {shape_key.rsplit('.', 1)[0]}.radius={cfg.radius:g}"
    if shape == "sphere":
        if not isinstance(params, (int, float)):
            raise ConfigError(
                f"{key}={params!r}: {shape_key}=sphere needs its radius, a single number less "
                f"than {box}; set e.g. {key}=0.5."
            )
        radii = [float(params)]
        example = "0.5"
    else:
        if not isinstance(params, list) or len(params) != 3:
            raise ConfigError(
                f"{key}={params!r}: {shape_key}=ellipsoid needs three radii [rx, ry, rz], each "
                f"less than {box}; set e.g. {key}=[0.3, 0.3, 0.8]."
            )
        radii = [float(r) for r in params]
        example = "[0.3, 0.3, 0.8]"
    if any(r <= 0.0 or r >= cfg.radius for r in radii):
        raise ConfigError(
            f"{key}={params!r}: every radius of the {shape} must be positive and less than "
            f"{box}, or its surface leaves the box; set e.g. {key}={example}."
        )


def _check_mesh(cfg: Any, path: str) -> None:
    key = f"{path}.shape_init"
    file = mesh_path(cfg.shape_init)
    scale = cfg.shape_init_params
    params_key = f"{path}.shape_init_params"
    if not isinstance(scale, (int, float)) or not 0.0 < scale < cfg.radius:
        raise ConfigError(
            f"{params_key}={scale!r}: {key}={cfg.shape_init!r} needs the mesh's size, one number "
            f"in (0, {cfg.radius:g}) (the largest absolute coordinate after centring; the box "
            f"radius is {cfg.radius:g}); set e.g. {params_key}={0.9 * cfg.radius:g}."
        )
    up, front = cfg.shape_init_mesh_up, cfg.shape_init_mesh_front
    if up[1] == front[1]:
        raise ConfigError(
            f"{path}.shape_init_mesh_up={up!r} and {path}.shape_init_mesh_front={front!r} lie "
            "on the same axis; the up and front directions must be orthogonal (e.g. up +y and "
            f"front +z). Change {path}.shape_init_mesh_front."
        )
    if not file.is_file():
        raise ConfigError(
            f"{key}={cfg.shape_init!r}: no such mesh file ({str(file.absolute())!r}). Set {key} "
            "to mesh:PATH with an existing mesh file (relative paths start at the working "
            "directory), or use sphere or ellipsoid."
        )
    if importlib.util.find_spec("igl") is None:
        raise ConfigError(
            f"{key}={cfg.shape_init!r} needs libigl for signed distances to the mesh, which is "
            "not installed; run `pip install libigl`, or use sphere or ellipsoid."
        )


def describe_shape(cfg: Any) -> str:
    """``cfg.shape_init`` and its parameters, for logs."""
    shape: Optional[str] = cfg.shape_init
    if shape is not None and shape.startswith(MESH_PREFIX):
        return (
            f"{shape} (scale {cfg.shape_init_params}, up {cfg.shape_init_mesh_up}, front "
            f"{cfg.shape_init_mesh_front})"
        )
    return f"{shape} {cfg.shape_init_params}"
