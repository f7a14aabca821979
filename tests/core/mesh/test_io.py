"""Mesh writers: OBJ/MTL/texture/GLB round trips through trimesh, the UV convention end to end,
and atomic writes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.color import uv_to_color

from studio.mesh import io as mesh_io
from studio.mesh.io import split_uv_seams, write_glb, write_mtl, write_obj, write_texture

BLOCK = 8  # texture pixels per colour block
# The atlas: 2 rows x 3 columns of charts (one per cube side), each chart 2 x 2 colour blocks,
# so the texture is 4 x 6 blocks and a wrong v flip, u/v swap or mirror reads another colour.
CHART_ROWS, CHART_COLS = 2, 3
SIDES = [  # origin, axis s, axis t (cube [-0.5, 0.5]^3, outward normals)
    ((-0.5, -0.5, 0.5), (1, 0, 0), (0, 1, 0)),
    ((0.5, -0.5, -0.5), (-1, 0, 0), (0, 1, 0)),
    ((0.5, -0.5, 0.5), (0, 0, -1), (0, 1, 0)),
    ((-0.5, -0.5, -0.5), (0, 0, 1), (0, 1, 0)),
    ((-0.5, 0.5, 0.5), (1, 0, 0), (0, 0, -1)),
    ((-0.5, -0.5, -0.5), (1, 0, 0), (0, 0, 1)),
]
SAMPLES_ST = [(0.2, 0.3), (0.7, 0.3), (0.2, 0.8), (0.7, 0.8)]  # off the triangle diagonal


def cube():
    """8 shared positions, 24 UVs (every side its own chart: seams on every edge), 12 faces."""
    corners = [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
    v_pos = np.array(corners, dtype=np.float64)
    faces, t_tex_idx, v_tex = [], [], []
    for side, (origin, s_axis, t_axis) in enumerate(SIDES):
        row, col = divmod(side, CHART_COLS)
        quad = []
        for s, t in ((0, 0), (1, 0), (1, 1), (0, 1)):
            p = np.add(origin, np.multiply(s, s_axis) + np.multiply(t, t_axis))
            quad.append(int(np.flatnonzero(np.abs(v_pos - p).sum(1) < 1e-9)[0]))
            v_tex.append(((col + s) / CHART_COLS, (row + t) / CHART_ROWS))
        base = 4 * side
        faces += [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
        t_tex_idx += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return v_pos, np.array(faces), np.array(v_tex), np.array(t_tex_idx)


def block_texture(seed: int = 0):
    """``(texture [H, W, 3] float, block colours uint8 [4, 6, 3])``, colours exact in 8 bits."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(256, size=(2 * CHART_ROWS, 2 * CHART_COLS, 3)).astype(np.uint8)
    texture = np.repeat(np.repeat(blocks, BLOCK, axis=0), BLOCK, axis=1) / 255.0
    return texture, blocks


def surface_samples():
    """``(points [N, 3], expected block index (row, col) [N, 2])`` under our UV convention.

    Our convention: v = 0 is the texture array's first row, so the point at (s, t) of a side in
    chart (row, col) lies in block row 2*row + (t > 0.5), block column 2*col + (s > 0.5).
    """
    points, blocks = [], []
    for side, (origin, s_axis, t_axis) in enumerate(SIDES):
        row, col = divmod(side, CHART_COLS)
        for s, t in SAMPLES_ST:
            points.append(np.add(origin, np.multiply(s, s_axis) + np.multiply(t, t_axis)))
            blocks.append((2 * row + int(t > 0.5), 2 * col + int(s > 0.5)))
    return np.array(points), np.array(blocks)


def uv_at(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """The loaded mesh's UV at surface points (barycentric inside the face holding each)."""
    triangles = mesh.vertices[mesh.faces]
    out = []
    for point in points:
        bary = trimesh.triangles.points_to_barycentric(
            triangles, np.repeat(point[None], len(triangles), 0)
        )
        normal = trimesh.triangles.normals(triangles)[0]
        dist = np.abs(np.einsum("fj,fj->f", triangles[:, 0] - point, normal))
        inside = np.flatnonzero((bary.min(axis=1) > -1e-9) & (dist < 1e-9))
        assert len(inside) == 1, (point, inside)
        face = inside[0]
        out.append(bary[face] @ mesh.visual.uv[mesh.faces[face]])
    return np.array(out)


def sampled_colours(mesh: trimesh.Trimesh, image: Image.Image) -> np.ndarray:
    points, _ = surface_samples()
    return uv_to_color(uv_at(mesh, points), image)[:, :3].astype(int)


def expected_colours(blocks: np.ndarray) -> np.ndarray:
    _, where = surface_samples()
    return blocks[where[:, 0], where[:, 1]].astype(int)


def load_glb(path: Path) -> trimesh.Trimesh:
    """The GLB's only mesh (``force="mesh"`` would drop the normals of a textured mesh)."""
    scene = trimesh.load(path, process=False)
    (mesh,) = scene.geometry.values()
    return mesh


def obj_lines(path: Path, key: str) -> list[list[str]]:
    return [line.split()[1:] for line in path.read_text().splitlines() if line.split()[:1] == [key]]


# -- OBJ text ----------------------------------------------------------------------------------


def test_obj_text_follows_the_conventions(tmp_path):
    v_pos, faces, v_tex, t_tex_idx = cube()
    v_nrm = v_pos / np.linalg.norm(v_pos, axis=1, keepdims=True)
    path = write_obj(
        tmp_path / "model.obj", v_pos, faces, v_nrm=v_nrm, v_tex=v_tex, t_tex_idx=t_tex_idx,
        mtl_name="model.mtl",
    )  # fmt: skip
    lines = path.read_text().splitlines()
    keys = [line.split()[0] for line in lines if line and not line.startswith("#")]
    assert keys[:3] == ["mtllib", "o", "g"] and lines[1] == "mtllib model.mtl"
    assert "usemtl default" in lines
    assert keys.index("usemtl") < keys.index("f")
    assert keys.count("v") == 8 and keys.count("vn") == 8 and keys.count("vt") == 24
    np.testing.assert_allclose(np.array(obj_lines(path, "v"), float), v_pos, atol=1e-9)
    vt = np.array(obj_lines(path, "vt"), float)
    np.testing.assert_allclose(vt, np.stack([v_tex[:, 0], 1.0 - v_tex[:, 1]], 1), atol=1e-9)
    corners = np.array([[c.split("/") for c in f] for f in obj_lines(path, "f")], dtype=int)
    assert corners.shape == (12, 3, 3)
    np.testing.assert_array_equal(corners[..., 0], faces + 1)  # 1-based
    np.testing.assert_array_equal(corners[..., 1], t_tex_idx + 1)
    np.testing.assert_array_equal(corners[..., 2], faces + 1)  # normals indexed like vertices
    assert corners.min() == 1


@pytest.mark.parametrize(
    ("kwargs", "corner"),
    [({}, r"^\d+$"), ({"v_nrm": True}, r"^\d+//\d+$"), ({"v_tex": True}, r"^\d+/\d+$")],
)
def test_obj_face_forms(tmp_path, kwargs, corner):
    import re

    v_pos, faces, _, _ = cube()
    extra = {}
    if "v_nrm" in kwargs:
        extra["v_nrm"] = v_pos * 2
    if "v_tex" in kwargs:
        extra["v_tex"] = v_pos[:, :2] + 0.5  # one UV per vertex: t_tex_idx defaults to faces
    path = write_obj(tmp_path / "m.obj", v_pos, faces, **extra)
    text = path.read_text()
    assert "mtllib" not in text and "usemtl" not in text
    for face in obj_lines(path, "f"):
        assert all(re.match(corner, c) for c in face), face


# -- OBJ round trips through trimesh -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_textured_obj_round_trip_and_uv_convention(tmp_path, fmt):
    v_pos, faces, v_tex, t_tex_idx = cube()
    texture, blocks = block_texture()
    write_texture(tmp_path / f"texture_kd.{fmt}", texture, fmt)
    write_mtl(tmp_path / "model.mtl", map_kd=f"texture_kd.{fmt}")
    write_obj(
        tmp_path / "model.obj", v_pos, faces, v_tex=v_tex, t_tex_idx=t_tex_idx,
        mtl_name="model.mtl",
    )  # fmt: skip
    mesh = trimesh.load(tmp_path / "model.obj", process=False)  # keeps seam vertices
    assert len(mesh.faces) == 12
    np.testing.assert_allclose(mesh.vertices[mesh.faces], v_pos[faces], atol=1e-6)
    flipped = np.stack([v_tex[:, 0], 1.0 - v_tex[:, 1]], axis=1)
    np.testing.assert_allclose(mesh.visual.uv[mesh.faces], flipped[t_tex_idx], atol=1e-6)
    image = mesh.visual.material.image  # trimesh followed mtllib -> map_Kd to the file
    assert image is not None and image.size == (6 * BLOCK, 4 * BLOCK)
    written = np.asarray(Image.open(tmp_path / f"texture_kd.{fmt}").convert("RGB")).astype(int)
    if fmt == "png":
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), (texture * 255).round())
        tolerance = 0
    else:
        assert np.abs(written - (texture * 255).round()).mean() < 2.0
        tolerance = 6  # quality 95, no chroma subsampling, block centres
    # end to end: the colour written at a UV is the one trimesh reads at that surface point
    got, want = sampled_colours(mesh, image), expected_colours(blocks)
    assert np.abs(got - want).max() <= tolerance, (got, want)


def test_uv_convention_test_detects_a_missing_flip(tmp_path, monkeypatch):
    """The end-to-end check above fails for a writer without the v flip (it is not vacuous)."""
    v_pos, faces, v_tex, t_tex_idx = cube()
    texture, blocks = block_texture()
    write_texture(tmp_path / "t.png", texture)
    write_mtl(tmp_path / "m.mtl", map_kd="t.png")
    unflipped = np.stack([v_tex[:, 0], 1.0 - v_tex[:, 1]], axis=1)  # cancels the writer's flip
    write_obj(
        tmp_path / "m.obj", v_pos, faces, v_tex=unflipped, t_tex_idx=t_tex_idx, mtl_name="m.mtl"
    )
    mesh = trimesh.load(tmp_path / "m.obj", process=False)
    wrong = (sampled_colours(mesh, mesh.visual.material.image) != expected_colours(blocks)).any(1)
    assert wrong.mean() > 0.9


def test_vertex_colour_obj_round_trip(tmp_path):
    v_pos, faces, _, _ = cube()
    rgb = np.random.default_rng(1).random((8, 3))
    write_obj(tmp_path / "c.obj", v_pos, faces, v_rgb=rgb)
    lines = obj_lines(tmp_path / "c.obj", "v")
    assert all(len(line) == 6 for line in lines)
    mesh = trimesh.load(tmp_path / "c.obj", process=False, maintain_order=True)
    assert mesh.visual.kind == "vertex"
    np.testing.assert_allclose(mesh.vertices, v_pos, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.visual.vertex_colors[:, :3] / 255.0, rgb, atol=1 / 255)


def test_obj_normals_round_trip(tmp_path):
    v_pos, faces, _, _ = cube()
    v_nrm = v_pos / np.linalg.norm(v_pos, axis=1, keepdims=True)
    write_obj(tmp_path / "n.obj", v_pos, faces, v_nrm=v_nrm)
    mesh = trimesh.load(tmp_path / "n.obj", process=False, maintain_order=True)
    np.testing.assert_allclose(mesh.vertex_normals[mesh.faces], v_nrm[faces], atol=1e-5)


# -- MTL and textures --------------------------------------------------------------------------


def test_mtl_content(tmp_path):
    path = write_mtl(
        tmp_path / "model.mtl", map_kd="texture_kd.jpg", map_ks="texture_ks.jpg",
        map_bump="texture_nrm.png", map_pm="texture_metallic.jpg", map_pr="texture_roughness.jpg",
    )  # fmt: skip
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert lines[0] == "newmtl default"
    for expected in (
        "Ka 0 0 0", "Kd 1 1 1", "Ks 0 0 0", "map_Kd texture_kd.jpg", "map_Ks texture_ks.jpg",
        "map_Bump texture_nrm.png", "map_Pm texture_metallic.jpg",
        "map_Pr texture_roughness.jpg", "illum 1", "Ns 0",
    ):  # fmt: skip
        assert expected in lines
    plain = write_mtl(tmp_path / "plain.mtl", map_kd=None).read_text()
    assert "Kd 1 1 1" in plain and "map_" not in plain


def test_texture_files(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.random((16, 24, 3))
    png = np.asarray(Image.open(write_texture(tmp_path / "a.png", rgb)))
    np.testing.assert_array_equal(png, np.round(rgb * 255).astype(np.uint8))
    grey = np.asarray(Image.open(write_texture(tmp_path / "g.png", rgb[..., :1])))
    assert grey.shape == (16, 24)
    rgba = np.asarray(Image.open(write_texture(tmp_path / "a4.png", rng.random((4, 4, 4)))))
    assert rgba.shape == (4, 4, 4)
    smooth = np.stack(
        [*np.meshgrid(np.linspace(0, 1, 64), np.linspace(0, 1, 48)), np.full((48, 64), 0.5)], -1
    )
    write_texture(tmp_path / "s.jpg", smooth, "jpg")
    jpg = np.asarray(Image.open(tmp_path / "s.jpg")).astype(float) / 255.0
    psnr = -10 * np.log10(np.mean((jpg - smooth) ** 2))
    assert psnr > 40.0, psnr
    out_of_range = write_texture(tmp_path / "clip.png", np.array([[[-1.0, 0.5, 2.0]]]))
    assert np.asarray(Image.open(out_of_range)).tolist() == [[[0, 128, 255]]]


@pytest.mark.parametrize(
    ("name", "image", "fmt", "message"),
    [
        ("a.jpg", np.zeros((2, 2, 4)), "jpg", "JPEG has no alpha"),
        ("a.png", np.zeros((2, 2, 3)), "jpg", "make them agree"),
        ("a.tiff", np.zeros((2, 2, 3)), None, "png or jpg"),
        ("a.png", np.zeros((2, 2, 2)), None, "[H, W, 1|3|4]"),
    ],
)
def test_texture_rejects(tmp_path, name, image, fmt, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("|", r"\|")):
        write_texture(tmp_path / name, image, fmt)
    assert list(tmp_path.iterdir()) == []


# -- GLB ---------------------------------------------------------------------------------------


def glb_json_and_accessor(path: Path, attribute: str) -> tuple[dict, np.ndarray]:
    """The GLB's JSON and the float32 VEC data of ``attribute`` of its first primitive."""
    data = path.read_bytes()
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2
    json_len, _ = struct.unpack_from("<II", data, 12)
    gltf = json.loads(data[20 : 20 + json_len])
    binary = data[20 + json_len + 8 :]
    accessor = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"][attribute]]
    view = gltf["bufferViews"][accessor["bufferView"]]
    width = {"VEC2": 2, "VEC3": 3, "VEC4": 4}[accessor["type"]]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    values = np.frombuffer(binary, np.float32, accessor["count"] * width, start)
    return gltf, values.reshape(-1, width)


def test_textured_glb_round_trip_and_uv_convention(tmp_path):
    v_pos, faces, v_tex, t_tex_idx = cube()
    v_nrm = v_pos / np.linalg.norm(v_pos, axis=1, keepdims=True)
    texture, blocks = block_texture(3)
    path = write_glb(
        tmp_path / "model.glb", v_pos, faces, v_tex=v_tex, t_tex_idx=t_tex_idx, texture=texture,
        v_nrm=v_nrm,
    )  # fmt: skip
    # raw glTF: TEXCOORD_0 is our (u, v) unchanged (glTF's v = 0 is the image's first row),
    # one vertex per (position, UV) pair: 24 for the cube
    gltf, raw_uv = glb_json_and_accessor(path, "TEXCOORD_0")
    _, raw_pos = glb_json_and_accessor(path, "POSITION")
    assert len(raw_uv) == len(raw_pos) == 24
    ours = np.concatenate([v_pos[faces], v_tex[t_tex_idx]], axis=-1).reshape(-1, 5)
    raw = np.concatenate([raw_pos, raw_uv], axis=-1)
    distance = np.abs(raw[:, None] - ours[None]).max(-1)  # [24 written, 36 corners]
    assert distance.min(1).max() < 1e-6  # every written vertex is one of our corners
    assert distance.min(0).max() < 1e-6  # every corner was written
    pbr = gltf["materials"][0]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == 1.0
    assert "baseColorTexture" in pbr
    # trimesh round trip
    mesh = load_glb(path)
    assert len(mesh.faces) == 12
    np.testing.assert_allclose(mesh.vertices[mesh.faces], v_pos[faces], atol=1e-6)
    flipped = np.stack([v_tex[:, 0], 1.0 - v_tex[:, 1]], axis=1)
    np.testing.assert_allclose(mesh.visual.uv[mesh.faces], flipped[t_tex_idx], atol=1e-6)
    np.testing.assert_allclose(mesh.vertex_normals[mesh.faces], v_nrm[faces], atol=1e-6)
    image = mesh.visual.material.baseColorTexture
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), (texture * 255).round())
    np.testing.assert_array_equal(sampled_colours(mesh, image), expected_colours(blocks))


def test_vertex_colour_glb_round_trip(tmp_path):
    v_pos, faces, _, _ = cube()
    rgb = np.random.default_rng(4).random((8, 3))
    mesh = load_glb(write_glb(tmp_path / "c.glb", v_pos, faces, v_rgb=rgb))
    assert mesh.visual.kind == "vertex"
    np.testing.assert_allclose(mesh.vertices, v_pos, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_allclose(mesh.visual.vertex_colors[:, :3] / 255.0, rgb, atol=1 / 255)


def test_split_uv_seams():
    _, faces, _, t_tex_idx = cube()
    pos_idx, uv_idx, new_faces = split_uv_seams(faces, t_tex_idx)
    assert len(pos_idx) == 24  # every side is its own chart
    np.testing.assert_array_equal(pos_idx[new_faces], faces)
    np.testing.assert_array_equal(uv_idx[new_faces], t_tex_idx)
    shared = np.array([[0, 1, 2], [0, 2, 3]])
    pos_idx, uv_idx, new_faces = split_uv_seams(shared, shared)
    assert len(pos_idx) == 4  # no seam, no split


_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_COMPONENT_BYTES = {5121: 1, 5123: 2, 5125: 4, 5126: 4}


def check_glb_layout(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Check the binary layout rules of a one-primitive GLB (chunk lengths and 4-byte alignment,
    the buffer's byteLength, bufferViews and accessors inside their ranges, attribute counts,
    POSITION min/max, unit NORMAL and TANGENT xyz, TANGENT w exactly +-1); returns
    ``(json, {attribute: values})``."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON" and json_length % 4 == 0
    gltf = json.loads(data[20 : 20 + json_length])
    bin_length, kind = struct.unpack_from("<I4s", data, 20 + json_length)
    assert kind == b"BIN\x00" and bin_length % 4 == 0
    assert 28 + json_length + bin_length == len(data)
    binary = data[28 + json_length :]
    (buffer,) = gltf["buffers"]
    assert bin_length - 3 <= buffer["byteLength"] <= bin_length
    for view in gltf["bufferViews"]:
        assert view.get("byteOffset", 0) % 4 == 0
        assert view.get("byteOffset", 0) + view["byteLength"] <= buffer["byteLength"]
    for accessor in gltf["accessors"]:
        view = gltf["bufferViews"][accessor["bufferView"]]
        size = _COMPONENT_BYTES[accessor["componentType"]]
        nbytes = accessor["count"] * _COMPONENTS[accessor["type"]] * size
        assert accessor.get("byteOffset", 0) % size == 0
        assert accessor.get("byteOffset", 0) + nbytes <= view["byteLength"]
    (mesh,) = gltf["meshes"]
    (primitive,) = mesh["primitives"]
    values = {}
    for name, index in primitive["attributes"].items():
        accessor = gltf["accessors"][index]
        assert accessor["componentType"] == 5126 or name.startswith("COLOR")
        view = gltf["bufferViews"][accessor["bufferView"]]
        width = _COMPONENTS[accessor["type"]]
        start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        if accessor["componentType"] == 5126:
            arr = np.frombuffer(binary, "<f4", accessor["count"] * width, start)
            values[name] = arr.reshape(-1, width)
    count = gltf["accessors"][primitive["attributes"]["POSITION"]]["count"]
    assert all(gltf["accessors"][i]["count"] == count for i in primitive["attributes"].values())
    position = gltf["accessors"][primitive["attributes"]["POSITION"]]
    np.testing.assert_allclose(position["min"], values["POSITION"].min(0), atol=1e-6)
    np.testing.assert_allclose(position["max"], values["POSITION"].max(0), atol=1e-6)
    for name in ("NORMAL", "TANGENT"):
        if name in values:
            np.testing.assert_allclose(np.linalg.norm(values[name][:, :3], axis=1), 1.0, atol=1e-5)
    if "TANGENT" in values:
        assert gltf["accessors"][primitive["attributes"]["TANGENT"]]["type"] == "VEC4"
        assert "NORMAL" in values  # glTF ignores tangents without normals
        assert set(np.unique(values["TANGENT"][:, 3]).tolist()) <= {-1.0, 1.0}
    return gltf, values


def pbr_maps(size: tuple[int, int], seed: int = 6):
    rng = np.random.default_rng(seed)
    return {
        "metallic": rng.random(size),
        "roughness": rng.random((*size, 1)),
        "normal_map": rng.random((*size, 3)),
    }


def test_pbr_glb_maps_tangents_and_layout(tmp_path):
    v_pos, faces, v_tex, t_tex_idx = cube()
    v_nrm = v_pos / np.linalg.norm(v_pos, axis=1, keepdims=True)
    texture, blocks = block_texture(5)
    maps = pbr_maps(texture.shape[:2])
    rng = np.random.default_rng(7)
    tangents = rng.normal(size=(8, 3))
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    signs = rng.choice([-1.0, 1.0], size=(8, 1))
    path = write_glb(
        tmp_path / "pbr.glb", v_pos, faces, v_tex=v_tex, t_tex_idx=t_tex_idx, texture=texture,
        v_nrm=v_nrm, v_tng=np.concatenate([2.0 * tangents, signs * (1 + 1e-5)], 1), **maps,
    )  # fmt: skip
    gltf, values = check_glb_layout(path)
    (material,) = gltf["materials"]
    pbr = material["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 1.0 and pbr["roughnessFactor"] == 1.0
    assert {"baseColorTexture", "metallicRoughnessTexture"} <= set(pbr)
    assert "normalTexture" in material
    # the TANGENT of every written (split) vertex is its position vertex's (unit xyz, exact w)
    which = np.abs(values["POSITION"][:, None] - v_pos[None]).max(-1).argmin(1)
    np.testing.assert_allclose(values["TANGENT"][:, :3], tangents[which], atol=1e-6)
    np.testing.assert_array_equal(values["TANGENT"][:, 3], signs[which, 0])
    np.testing.assert_allclose(values["NORMAL"], v_nrm[which], atol=1e-6)
    # trimesh attaches all three maps: R 255, G roughness, B metallic
    mesh = load_glb(path)
    pbr_material = mesh.visual.material
    base = np.asarray(pbr_material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(base, (texture * 255).round())
    packed = np.asarray(pbr_material.metallicRoughnessTexture.convert("RGB")).astype(int)
    assert np.all(packed[..., 0] == 255)
    np.testing.assert_array_equal(packed[..., 1], np.round(maps["roughness"][..., 0] * 255))
    np.testing.assert_array_equal(packed[..., 2], np.round(maps["metallic"] * 255))
    normal = np.asarray(pbr_material.normalTexture.convert("RGB"))
    np.testing.assert_array_equal(normal, np.round(maps["normal_map"] * 255))
    np.testing.assert_array_equal(
        sampled_colours(mesh, pbr_material.baseColorTexture), expected_colours(blocks)
    )


def test_glb_with_one_of_metallic_or_roughness(tmp_path):
    v_pos, faces, v_tex, t_tex_idx = cube()
    texture, _ = block_texture()
    grey = np.full(texture.shape[:2], 0.4)
    for given, (g, b) in (("metallic", (255, 102)), ("roughness", (102, 0))):
        path = write_glb(
            tmp_path / f"{given}.glb", v_pos, faces, v_tex=v_tex, t_tex_idx=t_tex_idx,
            texture=texture, **{given: grey},
        )  # fmt: skip
        gltf, values = check_glb_layout(path)
        assert "TANGENT" not in values and "normalTexture" not in gltf["materials"][0]
        packed = np.asarray(load_glb(path).visual.material.metallicRoughnessTexture)
        assert packed[..., :3].reshape(-1, 3).tolist()[0] == [255, g, b]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"normal_map": True}, "pass v_tng"),
        ({"v_tng": True}, "pass v_nrm"),
        ({"texture": None, "metallic": True}, "pass texture as well"),
        ({"v_tng": "bad w", "v_nrm": True}, r"\+1 or -1"),
        ({"v_tex": None, "t_tex_idx": None, "texture": None, "v_tng": True}, "need UVs"),
        ({"metallic": np.zeros((4, 4)), "roughness": True}, "differ in size"),
    ],
)
def test_pbr_glb_rejects(tmp_path, kwargs, message):
    v_pos, faces, v_tex, t_tex_idx = cube()
    texture, _ = block_texture()
    maps = pbr_maps(texture.shape[:2])
    stand_ins = {
        "normal_map": maps["normal_map"],
        "metallic": maps["metallic"],
        "roughness": maps["roughness"],
        "v_nrm": v_pos,
        "v_tng": np.tile([1.0, 0.0, 0.0, 1.0], (8, 1)),
    }
    args = {"v_tex": v_tex, "t_tex_idx": t_tex_idx, "texture": texture}
    for key, value in kwargs.items():
        if value is True:
            value = stand_ins[key]
        elif isinstance(value, str):  # "bad w"
            value = np.tile([1.0, 0.0, 0.0, 0.5], (8, 1))
        args[key] = value
    with pytest.raises(ValueError, match=message):
        write_glb(tmp_path / "m.glb", v_pos, faces, **args)
    assert list(tmp_path.iterdir()) == []


def test_add_glb_vertex_attribute_checks_the_count(tmp_path):
    v_pos, faces, _, _ = cube()
    write_glb(tmp_path / "c.glb", v_pos, faces)
    data = (tmp_path / "c.glb").read_bytes()
    with pytest.raises(ValueError, match=r"TANGENT must have shape \[8, 1..4\]"):
        mesh_io.add_glb_vertex_attribute(data, "TANGENT", np.zeros((7, 4)))
    extra = np.arange(16, dtype=np.float32).reshape(8, 2)
    (tmp_path / "d.glb").write_bytes(mesh_io.add_glb_vertex_attribute(data, "_EXTRA", extra))
    _, values = check_glb_layout(tmp_path / "d.glb")
    np.testing.assert_array_equal(values["_EXTRA"], extra)
    np.testing.assert_array_equal(values["POSITION"], v_pos.astype(np.float32))
    # and read back by name (also trimesh's own attributes)
    written = (tmp_path / "d.glb").read_bytes()
    np.testing.assert_array_equal(mesh_io.read_glb_vertex_attribute(written, "_EXTRA"), extra)
    np.testing.assert_array_equal(
        mesh_io.read_glb_vertex_attribute(written, "POSITION"), v_pos.astype(np.float32)
    )
    assert mesh_io.read_glb_vertex_attribute(written, "TANGENT") is None


def test_mtl_normal_map_keys(tmp_path):
    path = write_mtl(tmp_path / "m.mtl", map_kd="kd.png", map_bump="nrm.png", norm="nrm.png")
    lines = path.read_text().splitlines()
    assert "map_Bump nrm.png" in lines and "norm nrm.png" in lines


# -- failures ----------------------------------------------------------------------------------


def writers(folder: Path):
    v_pos, faces, v_tex, t_tex_idx = cube()
    texture, _ = block_texture()
    return {
        "obj": lambda: write_obj(folder / "m.obj", v_pos, faces, v_tex=v_tex, t_tex_idx=t_tex_idx),
        "mtl": lambda: write_mtl(folder / "m.mtl", map_kd="t.png"),
        "png": lambda: write_texture(folder / "t.png", texture),
        "jpg": lambda: write_texture(folder / "t.jpg", texture),
        "glb": lambda: write_glb(
            folder / "m.glb", v_pos, faces, v_tex=v_tex, t_tex_idx=t_tex_idx, texture=texture
        ),
    }


@pytest.mark.parametrize("kind", ["obj", "mtl", "png", "jpg", "glb"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, kind):
    folder = tmp_path / "new" / "export"

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(mesh_io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        writers(folder)[kind]()
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file, no created folder


def test_failure_mid_obj_keeps_the_previous_file(tmp_path, monkeypatch):
    v_pos, faces, _, _ = cube()
    target = write_obj(tmp_path / "m.obj", v_pos, faces)
    before = target.read_bytes()
    calls = []

    def save_then_fail(handle, rows, fmt):
        calls.append(fmt)
        if fmt.startswith("f "):
            handle.write("f 1 2 3\n")
            raise RuntimeError("interrupted while writing faces")
        np.savetxt(handle, rows, fmt=fmt)

    monkeypatch.setattr(mesh_io, "_save", save_then_fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_obj(target, v_pos * 2, faces)
    assert len(calls) == 2
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.obj"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"faces": [[0, 1, 8]]}, r"faces indexes 0\.\.7"),
        ({"v_pos": np.zeros((8, 2))}, r"v_pos must have shape \[N, 3\]"),
        ({"v_rgb": np.zeros((7, 3))}, r"v_rgb must have shape \[8, 3\]"),
        ({"v_tex": np.zeros((5, 2))}, "one UV per vertex"),
        ({"t_tex_idx": [[0, 1, 2]]}, "without v_tex"),
        ({"v_pos": np.full((8, 3), np.nan)}, "NaN"),
    ],
)
def test_obj_rejects_bad_arrays(tmp_path, kwargs, message):
    v_pos, faces, _, _ = cube()
    arrays = {"v_pos": v_pos, "faces": faces[:1], **kwargs}
    with pytest.raises(ValueError, match=message):
        write_obj(tmp_path / "m.obj", arrays.pop("v_pos"), arrays.pop("faces"), **arrays)
    assert list(tmp_path.iterdir()) == []
