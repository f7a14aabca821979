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
import json
import os
import struct
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
    norm: Optional[str] = None,
    material_name: str = "default",
) -> Path:
    """Write a one-material MTL file; texture names are paths relative to the MTL file.

    A matte material: ``Ka 0 0 0``, ``Kd 1 1 1`` (multiplies ``map_Kd`` when given), ``Ks 0 0 0``
    (or ``map_Ks``), ``Ns 0``, ``d 1``, ``illum 1``; optional ``map_Bump`` (normal map, as
    Blender and threestudio read it), ``map_Pm`` (metallic), ``map_Pr`` (roughness) and ``norm``
    (normal map) from the PBR extension of MTL (tinyobjloader, Assimp and three.js read a normal
    map from ``norm`` and a height map from ``map_Bump``).
    """
    lines = [f"newmtl {_check_name('material_name', material_name)}", "Ka 0 0 0", "Kd 1 1 1"]
    maps = [
        ("map_Kd", map_kd),
        ("map_Ks", map_ks),
        ("map_Bump", map_bump),
        ("map_Pm", map_pm),
        ("map_Pr", map_pr),
        ("norm", norm),
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


def _grey(name: str, value: Any) -> np.ndarray:
    arr = _array(value, np.float64)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(
            f"{name} must be a grey texture [H, W] or [H, W, 1]; got {list(arr.shape)}"
        )
    return arr


def metallic_roughness_texture(metallic: Any = None, roughness: Any = None) -> Optional[np.ndarray]:
    """glTF's ``metallicRoughnessTexture`` ``[H, W, 3]`` in ``[0, 1]``: R unused (1, i.e. 255,
    so a reader that takes R as occlusion sees none), G roughness (1 when not given), B metallic
    (0 when not given). ``None`` when neither is given."""
    grey = {
        k: _grey(k, v)
        for k, v in (("metallic", metallic), ("roughness", roughness))
        if v is not None
    }
    if not grey:
        return None
    shapes = {arr.shape for arr in grey.values()}
    if len(shapes) > 1:
        raise ValueError(f"metallic and roughness textures differ in size: {sorted(shapes)}")
    (shape,) = shapes
    packed = np.ones((*shape, 3))
    packed[..., 1] = grey.get("roughness", 1.0)
    packed[..., 2] = grey.get("metallic", 0.0)
    return packed


def _tangents(value: Any, count: int) -> np.ndarray:
    """``[count, 4]`` tangents: xyz normalised, w snapped to exactly +-1 (must be near it)."""
    tng = _rows("v_tng", value, 4, count, np.float64)
    length = np.linalg.norm(tng[:, :3], axis=1, keepdims=True)
    if len(tng) and (length.min() < 1e-6 or np.abs(np.abs(tng[:, 3]) - 1.0).max() > 1e-3):
        raise ValueError("v_tng must hold non-zero tangents (xyz) and a handedness w of +1 or -1")
    w = np.where(tng[:, 3:] < 0.0, -1.0, 1.0)
    return np.concatenate([tng[:, :3] / np.maximum(length, 1e-12), w], axis=1)


def _glb_chunks(data: bytes) -> tuple[dict, bytes]:
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    json_length, json_kind = struct.unpack_from("<I4s", data, 12)
    if magic != b"glTF" or version != 2 or json_kind != b"JSON" or length != len(data):
        raise ValueError("not a binary glTF 2.0 file with a JSON chunk first")
    gltf = json.loads(data[20 : 20 + json_length])
    binary = b""
    if 20 + json_length < len(data):
        bin_length, bin_kind = struct.unpack_from("<I4s", data, 20 + json_length)
        if bin_kind != b"BIN\x00":
            raise ValueError("the binary glTF's second chunk is not BIN")
        start = 28 + json_length
        binary = data[start : start + bin_length]
    return gltf, binary


def _glb_bytes(gltf: dict, binary: bytes) -> bytes:
    content = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    content += b" " * (-len(content) % 4)  # chunks are 4-byte aligned: JSON pads with spaces
    binary += b"\x00" * (-len(binary) % 4)  # ... and BIN with zeros
    total = 12 + 8 + len(content) + (8 + len(binary) if binary else 0)
    parts = [struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(content), b"JSON")]
    parts.append(content)
    if binary:
        parts += [struct.pack("<I4s", len(binary), b"BIN\x00"), binary]
    return b"".join(parts)


def add_glb_vertex_attribute(data: bytes, name: str, values: np.ndarray) -> bytes:
    """``data`` (a GLB with one mesh of one primitive) with the float32 vertex attribute ``name``
    (e.g. ``TANGENT``, ``values [N, 4]`` over the primitive's N vertices) appended.

    The values go at the end of the (only) buffer, 4-byte aligned, in a bufferView of their own
    (``target`` ARRAY_BUFFER) read by a new accessor (no min/max: glTF requires them only for
    POSITION); the buffer's ``byteLength`` and the GLB's chunk lengths are updated.
    """
    gltf, binary = _glb_chunks(data)
    values = np.ascontiguousarray(values, dtype="<f4")
    meshes = gltf.get("meshes", [])
    if len(meshes) != 1 or len(meshes[0]["primitives"]) != 1:
        raise ValueError("add_glb_vertex_attribute expects one mesh with one primitive")
    primitive = meshes[0]["primitives"][0]
    count = gltf["accessors"][primitive["attributes"]["POSITION"]]["count"]
    if values.ndim != 2 or len(values) != count or not 1 <= values.shape[1] <= 4:
        raise ValueError(f"{name} must have shape [{count}, 1..4]; got {list(values.shape)}")
    binary += b"\x00" * (-len(binary) % 4)
    views = gltf.setdefault("bufferViews", [])
    views.append(
        {"buffer": 0, "byteOffset": len(binary), "byteLength": values.nbytes, "target": 34962}
    )
    binary += values.tobytes()
    binary += b"\x00" * (-len(binary) % 4)
    kind = "SCALAR" if values.shape[1] == 1 else f"VEC{values.shape[1]}"
    gltf["accessors"].append(
        {"bufferView": len(views) - 1, "componentType": 5126, "count": count, "type": kind}
    )
    primitive["attributes"][name] = len(gltf["accessors"]) - 1
    buffers = gltf.setdefault("buffers", [{}])
    buffers[0]["byteLength"] = len(binary)
    return _glb_bytes(gltf, binary)


def read_glb_vertex_attribute(data: bytes, name: str) -> Optional[np.ndarray]:
    """The float32 vertex attribute ``name`` (e.g. ``TANGENT``) of the only primitive of the
    only mesh of GLB ``data`` as ``[N, C]`` float32 (``None`` when the primitive has none), read
    as :func:`add_glb_vertex_attribute` writes it (strided bufferViews are read too)."""
    gltf, binary = _glb_chunks(data)
    meshes = gltf.get("meshes", [])
    if len(meshes) != 1 or len(meshes[0]["primitives"]) != 1:
        raise ValueError("read_glb_vertex_attribute expects one mesh with one primitive")
    index = meshes[0]["primitives"][0]["attributes"].get(name)
    if index is None:
        return None
    accessor = gltf["accessors"][index]
    if accessor.get("componentType") != 5126:
        raise ValueError(f"{name} is not stored as float32")
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[accessor["type"]]
    view = gltf["bufferViews"][accessor["bufferView"]]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    stride = view.get("byteStride", 4 * width)
    count = accessor["count"]
    rows = np.ndarray((count, width), dtype="<f4", buffer=binary, offset=start, strides=(stride, 4))
    return rows.astype(np.float32)


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
    metallic: Any = None,
    roughness: Any = None,
    normal_map: Any = None,
    v_tng: Any = None,
) -> Path:
    """Write a binary glTF through trimesh; returns ``path``.

    With ``texture [H, W, 3]`` (floats in ``[0, 1]``, this module's UV convention) and ``v_tex``
    (+ ``t_tex_idx``): a PBR material whose ``baseColorTexture`` is the image (stored as PNG),
    ``metallicFactor 0``, ``roughnessFactor 1``; vertices are split at UV seams so each has one
    UV. With ``v_rgb [V, 3]``: vertex colours. ``v_nrm [V, 3]`` adds normals.

    PBR maps (all in the UV atlas of ``texture``): ``metallic`` / ``roughness`` (grey
    ``[H, W]`` or ``[H, W, 1]``) become the ``metallicRoughnessTexture`` (R 1, G roughness, B
    metallic; see :func:`metallic_roughness_texture`) with ``metallicFactor 1`` and
    ``roughnessFactor 1``; ``normal_map [H, W, 3]`` (a tangent-space normal encoded as
    ``(n + 1) / 2``, +X along the tangent, +Y along the bitangent, i.e. towards the image's top)
    becomes the ``normalTexture`` and needs ``v_tng [V, 4]`` (per position vertex: unit tangent
    and handedness +-1, :attr:`studio.mesh.mesh.Mesh.v_tng` / ``v_tng_sign``) and ``v_nrm``,
    written as the ``TANGENT`` and ``NORMAL`` attributes of the split vertices (glTF ignores
    tangents without normals).
    """
    import trimesh
    from PIL import Image

    pos = _rows("v_pos", v_pos, 3, None, np.float64)
    tri = _indices("faces", faces, None, len(pos))
    nrm = None if v_nrm is None else _rows("v_nrm", v_nrm, 3, len(pos), np.float64)
    tng = None if v_tng is None else _tangents(v_tng, len(pos))
    if v_rgb is not None and v_tex is not None:
        raise ValueError("write_glb takes either UVs (and a texture) or vertex colours, not both")
    pbr_maps = {"metallic": metallic, "roughness": roughness, "normal_map": normal_map}
    extra = sorted(k for k, v in pbr_maps.items() if v is not None)
    if (texture is not None or extra or tng is not None) and v_tex is None:
        raise ValueError("textures and tangents need UVs: pass v_tex (and t_tex_idx)")
    if extra and texture is None:
        raise ValueError(f"{', '.join(extra)} need the base colour: pass texture as well")
    if normal_map is not None and tng is None:
        raise ValueError("a normal map needs the tangent frame it was baked in: pass v_tng")
    if tng is not None and nrm is None:
        raise ValueError("tangents need normals (glTF ignores TANGENT without NORMAL): pass v_nrm")
    visual: Any = None
    pos_idx = np.arange(len(pos))
    if v_tex is not None:
        uv, uv_idx = _uv_indices(v_tex, t_tex_idx, tri, len(pos))
        pos_idx, uv_of_vertex, tri = split_uv_seams(tri, uv_idx)
        uv_trimesh = np.stack([uv[uv_of_vertex, 0], 1.0 - uv[uv_of_vertex, 1]], axis=1)
        material = None
        if texture is not None:
            pixels = _rgb_pixels("texture", texture)
            maps: dict[str, Any] = {}
            packed = metallic_roughness_texture(metallic, roughness)
            if packed is not None:
                maps["metallicRoughnessTexture"] = Image.fromarray(texture_to_uint8(packed))
            if normal_map is not None:
                maps["normalTexture"] = Image.fromarray(_rgb_pixels("normal_map", normal_map))
            material = trimesh.visual.material.PBRMaterial(
                name="default",
                baseColorTexture=Image.fromarray(pixels),
                metallicFactor=1.0 if packed is not None else 0.0,
                roughnessFactor=1.0,
                **maps,
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
    if tng is not None:
        data = add_glb_vertex_attribute(data, "TANGENT", tng[pos_idx])
    with atomic_file(path) as handle:
        handle.write(data)
    return Path(path)


def _rgb_pixels(name: str, image: Any) -> np.ndarray:
    pixels = texture_to_uint8(image)
    if pixels.shape[-1] != 3:
        raise ValueError(f"a GLB {name} must be RGB [H, W, 3]; got {list(pixels.shape)}")
    return pixels
