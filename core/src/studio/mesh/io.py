"""Mesh files from plain arrays: Wavefront OBJ (+ MTL and texture images) and binary glTF (GLB).

UV convention (shared with :mod:`studio.mesh.texture`)
    A texture is an array ``[H, W, C]`` whose row ``i`` covers ``v`` in ``[i/H, (i+1)/H)`` and
    column ``j`` covers ``u`` in ``[j/W, (j+1)/W)``: ``v = 0`` is the array's first row, and image
    files are written with that first row at the top (as every image format stores it). So a
    texel at array index ``(i, j)`` is sampled at ``uv = ((j + 0.5)/W, (i + 0.5)/H)``.

    * OBJ puts ``v = 0`` at the *bottom* of the picture (Blender, trimesh, most viewers): the
      writer emits ``vt u (1 - v)`` and leaves the image rows alone.
    * glTF puts ``v = 0`` at the *top* (the first row): GLB gets ``(u, v)`` unchanged. trimesh
      keeps OBJ's convention in memory and flips on glTF export, so it is given ``(u, 1 - v)``.

Atomicity
    Every writer writes a temporary file beside the target, fsyncs it and renames it over the
    target: the target is either untouched or complete, and a failed write leaves nothing behind
    (no temporary file, no target, no folder it had to create).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, Optional

import numpy as np

ImageFormat = Literal["png", "jpg"]
JPEG_QUALITY = 95
_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}


# -- atomic files ----------------------------------------------------------------------------


def _missing_parents(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: Literal["w", "wb"] = "wb") -> Iterator[IO[Any]]:
    """A handle on a temporary file that becomes ``path`` when the block ends without error.

    Parent folders are created as needed and removed again (when still empty) on failure.
    """
    path = Path(path)
    created = _missing_parents(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


# -- array checks ----------------------------------------------------------------------------


def _array(value: Any, dtype: Any) -> np.ndarray:
    """numpy view of a numpy array or (any-device) torch tensor."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _rows(name: str, value: Any, width: int, count: Optional[int], dtype: Any) -> np.ndarray:
    arr = _array(value, dtype)
    if arr.ndim != 2 or arr.shape[1] != width or (count is not None and len(arr) != count):
        rows = "N" if count is None else str(count)
        raise ValueError(f"{name} must have shape [{rows}, {width}]; got {list(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def _indices(name: str, value: Any, faces: Optional[int], limit: int) -> np.ndarray:
    idx = _rows(name, value, 3, faces, np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= limit):
        raise ValueError(
            f"{name} indexes 0..{limit - 1} (0-based); got values in [{idx.min()}, {idx.max()}]"
        )
    return idx


def _uv_indices(
    v_tex: Any, t_tex_idx: Any, faces: np.ndarray, n_vertices: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(uv [T, 2], uv index per face corner [F, 3])``; without ``t_tex_idx`` UVs are per vertex."""
    uv = _rows("v_tex", v_tex, 2, None, np.float64)
    if t_tex_idx is None:
        if len(uv) != n_vertices:
            raise ValueError(
                f"v_tex without t_tex_idx must hold one UV per vertex ({n_vertices}); got {len(uv)}"
            )
        return uv, faces
    return uv, _indices("t_tex_idx", t_tex_idx, len(faces), len(uv))


def _unit_rgb(name: str, value: Any, count: int) -> np.ndarray:
    return np.clip(_rows(name, value, 3, count, np.float64), 0.0, 1.0)


# -- OBJ + MTL -------------------------------------------------------------------------------


def _check_name(what: str, value: str) -> str:
    if not value or any(c in value for c in "\r\n") or value != value.strip():
        raise ValueError(f"{what} must be a non-empty single line without outer spaces: {value!r}")
    return value


def write_obj(
    path: str | Path,
    v_pos: Any,
    faces: Any,
    *,
    v_nrm: Any = None,
    v_tex: Any = None,
    t_tex_idx: Any = None,
    v_rgb: Any = None,
    mtl_name: Optional[str] = None,
    material_name: str = "default",
) -> Path:
    """Write a Wavefront OBJ; returns ``path``.

    ``v_pos [V, 3]``, ``faces [F, 3]`` (0-based, written 1-based), ``v_nrm [V, 3]`` (indexed like
    the vertices), ``v_tex [T, 2]`` in this module's UV convention (written as ``vt u 1-v``) with
    ``t_tex_idx [F, 3]`` (defaults to ``faces`` when ``T == V``), ``v_rgb [V, 3]`` in ``[0, 1]``
    (written as ``v x y z r g b``). ``mtl_name`` (a file name relative to the OBJ, written by
    :func:`write_mtl`) adds ``mtllib`` and ``usemtl material_name``.
    """
    pos = _rows("v_pos", v_pos, 3, None, np.float64)
    tri = _indices("faces", faces, None, len(pos))
    columns = [tri + 1]
    nrm = None if v_nrm is None else _rows("v_nrm", v_nrm, 3, len(pos), np.float64)
    uv = uv_idx = None
    if v_tex is not None:
        uv, uv_idx = _uv_indices(v_tex, t_tex_idx, tri, len(pos))
    elif t_tex_idx is not None:
        raise ValueError("t_tex_idx was given without v_tex")
    rgb = None if v_rgb is None else _unit_rgb("v_rgb", v_rgb, len(pos))
    if mtl_name is not None:
        _check_name("mtl_name", mtl_name)
        _check_name("material_name", material_name)

    corner = "%d"
    if uv_idx is not None and nrm is not None:
        corner, columns = "%d/%d/%d", [tri + 1, uv_idx + 1, tri + 1]
    elif uv_idx is not None:
        corner, columns = "%d/%d", [tri + 1, uv_idx + 1]
    elif nrm is not None:
        corner, columns = "%d//%d", [tri + 1, tri + 1]
    face_rows = np.stack(columns, axis=-1).reshape(
        len(tri), -1
    )  # corner-major: v, vt, vn per corner

    with atomic_file(path, "w") as handle:
        handle.write("# written by studio\n")
        if mtl_name is not None:
            handle.write(f"mtllib {mtl_name}\n")
        handle.write("o object\ng object\n")
        if rgb is not None:
            _save(handle, np.concatenate([pos, rgb], axis=1), "v %.9g %.9g %.9g %.6g %.6g %.6g")
        else:
            _save(handle, pos, "v %.9g %.9g %.9g")
        if nrm is not None:
            _save(handle, nrm, "vn %.6g %.6g %.6g")
        if uv is not None:
            _save(handle, np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1), "vt %.9g %.9g")
        if mtl_name is not None:
            handle.write(f"usemtl {material_name}\n")
        _save(handle, face_rows, "f " + " ".join([corner] * 3))
    return Path(path)


def _save(handle: IO[str], rows: np.ndarray, fmt: str) -> None:
    if len(rows):
        np.savetxt(handle, rows, fmt=fmt)


def write_mtl(
    path: str | Path,
    *,
    map_kd: Optional[str],
    map_ks: Optional[str] = None,
    map_bump: Optional[str] = None,
    map_pm: Optional[str] = None,
    map_pr: Optional[str] = None,
    material_name: str = "default",
) -> Path:
    """Write a one-material MTL file; texture names are paths relative to the MTL file.

    A matte material: ``Ka 0 0 0``, ``Kd 1 1 1`` (multiplies ``map_Kd`` when given), ``Ks 0 0 0``
    (or ``map_Ks``), ``Ns 0``, ``d 1``, ``illum 1``; optional ``map_Bump`` (normal map),
    ``map_Pm`` (metallic) and ``map_Pr`` (roughness) from the PBR extension of MTL.
    """
    lines = [f"newmtl {_check_name('material_name', material_name)}", "Ka 0 0 0", "Kd 1 1 1"]
    maps = [
        ("map_Kd", map_kd),
        ("map_Ks", map_ks),
        ("map_Bump", map_bump),
        ("map_Pm", map_pm),
        ("map_Pr", map_pr),
    ]
    if map_kd is not None:
        lines.append(f"map_Kd {_check_name('map_kd', map_kd)}")
    lines.append("Ks 0 0 0")
    for key, name in maps[1:]:
        if name is not None:
            lines.append(f"{key} {_check_name(key, name)}")
    lines += ["Ns 0", "d 1", "illum 1"]
    with atomic_file(path, "w") as handle:
        handle.write("# written by studio\n" + "\n".join(lines) + "\n")
    return Path(path)


# -- texture images --------------------------------------------------------------------------


def texture_to_uint8(image: Any) -> np.ndarray:
    """``[H, W]`` / ``[H, W, C]`` floats in ``[0, 1]`` -> ``uint8`` with C in {1, 3, 4} (rounded)."""
    arr = _array(image, np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or 0 in arr.shape:
        raise ValueError(f"a texture must have shape [H, W, 1|3|4]; got {list(arr.shape)}")
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _image_format(path: Path, fmt: Optional[str]) -> str:
    suffix = path.suffix.lower().lstrip(".")
    name = (fmt or suffix).lower()
    if name not in _FORMATS:
        raise ValueError(f"texture format must be png or jpg; got {fmt or path.suffix!r}")
    if suffix in _FORMATS and _FORMATS[suffix] != _FORMATS[name]:
        raise ValueError(f"{path.name} has a .{suffix} name but fmt={fmt!r}; make them agree")
    return _FORMATS[name]


def write_texture(path: str | Path, image: Any, fmt: Optional[ImageFormat] = None) -> Path:
    """Write a texture image (row 0 at the top of the file); returns ``path``.

    ``image [H, W, C]`` floats in ``[0, 1]`` (clipped; C = 1 grey, 3 RGB, 4 RGBA for PNG only).
    ``fmt`` defaults to the file's suffix. JPEG is written at quality 95 without chroma
    subsampling (texture colours stay sharp at chart borders).
    """
    from PIL import Image

    path = Path(path)
    kind = _image_format(path, fmt)
    pixels = texture_to_uint8(image)
    if kind == "JPEG" and pixels.shape[-1] == 4:
        raise ValueError("JPEG has no alpha channel: write RGBA textures as png")
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options: dict[str, Any] = {"quality": JPEG_QUALITY, "subsampling": 0} if kind == "JPEG" else {}
    with atomic_file(path) as handle:
        picture.save(handle, format=kind, **options)
    return path


# -- GLB -------------------------------------------------------------------------------------


def split_uv_seams(
    faces: np.ndarray, t_tex_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vertex per distinct (position, UV) pair.

    Returns ``(position index [N], uv index [N], faces [F, 3])`` over the ``N`` new vertices.
    """
    pairs = np.stack([faces.reshape(-1), t_tex_idx.reshape(-1)], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], inverse.reshape(-1, 3)


def write_glb(
    path: str | Path,
    v_pos: Any,
    faces: Any,
    *,
    v_tex: Any = None,
    t_tex_idx: Any = None,
    texture: Any = None,
    v_rgb: Any = None,
    v_nrm: Any = None,
) -> Path:
    """Write a binary glTF through trimesh; returns ``path``.

    With ``texture [H, W, 3]`` (floats in ``[0, 1]``, this module's UV convention) and ``v_tex``
    (+ ``t_tex_idx``): a PBR material whose ``baseColorTexture`` is the image (stored as PNG),
    ``metallicFactor 0``, ``roughnessFactor 1``; vertices are split at UV seams so each has one
    UV. With ``v_rgb [V, 3]``: vertex colours. ``v_nrm [V, 3]`` adds normals.
    """
    import trimesh
    from PIL import Image

    pos = _rows("v_pos", v_pos, 3, None, np.float64)
    tri = _indices("faces", faces, None, len(pos))
    nrm = None if v_nrm is None else _rows("v_nrm", v_nrm, 3, len(pos), np.float64)
    if v_rgb is not None and v_tex is not None:
        raise ValueError("write_glb takes either UVs (and a texture) or vertex colours, not both")
    if texture is not None and v_tex is None:
        raise ValueError("a texture needs UVs: pass v_tex (and t_tex_idx)")
    visual: Any = None
    pos_idx = np.arange(len(pos))
    if v_tex is not None:
        uv, uv_idx = _uv_indices(v_tex, t_tex_idx, tri, len(pos))
        pos_idx, uv_of_vertex, tri = split_uv_seams(tri, uv_idx)
        uv_trimesh = np.stack([uv[uv_of_vertex, 0], 1.0 - uv[uv_of_vertex, 1]], axis=1)
        material = None
        if texture is not None:
            pixels = texture_to_uint8(texture)
            if pixels.shape[-1] != 3:
                raise ValueError(f"a GLB texture must be RGB [H, W, 3]; got {list(pixels.shape)}")
            material = trimesh.visual.material.PBRMaterial(
                name="default",
                baseColorTexture=Image.fromarray(pixels),
                metallicFactor=0.0,
                roughnessFactor=1.0,
            )
        visual = trimesh.visual.TextureVisuals(uv=uv_trimesh, material=material)
    elif v_rgb is not None:
        rgb = _unit_rgb("v_rgb", v_rgb, len(pos))
        rgba = np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)
        visual = trimesh.visual.ColorVisuals(vertex_colors=(rgba * 255.0 + 0.5).astype(np.uint8))
    mesh = trimesh.Trimesh(
        vertices=pos[pos_idx],
        faces=tri,
        vertex_normals=None if nrm is None else nrm[pos_idx],
        visual=visual,
        process=False,
    )
    data = trimesh.exchange.gltf.export_glb(trimesh.Scene(mesh), include_normals=nrm is not None)
    with atomic_file(path) as handle:
        handle.write(data)
    return Path(path)
