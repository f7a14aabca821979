"""mesh-exporter with PBR channels: a fake system whose material exports analytic albedo, metallic,
roughness and bump at every surface point; obj-mtl and glb exports reopened with trimesh (and, for
what trimesh's MTL reader leaves out, the .mtl text), their maps sampled at texel centres."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from studio.errors import StudioError
from studio.exporters.base import export_atomically
from studio.exporters.mesh_exporter import MeshExporter
from studio.mesh import Mesh
from tests.core.mesh.test_io import check_glb_layout, load_glb

SIZE = 128


def channels(p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Analytic channels of points ``p [N, 3]`` inside the unit sphere, each in [0, 1]."""
    bump = torch.stack([0.4 * p[:, 0], -0.3 * p[:, 2], torch.ones_like(p[:, 0])], -1)
    bump = bump / bump.norm(dim=-1, keepdim=True)
    return {
        "albedo": ((p + 1) / 2).clamp(0, 1),
        "metallic": ((p[:, :1] + 1) / 2).clamp(0, 1),
        "roughness": ((p[:, 1:2] + 1) / 2).clamp(0, 1),
        "bump": (bump + 1) / 2,
    }


class FakeGeometry:
    def __init__(self, mesh: Mesh):
        self.mesh = mesh
        self.cfg = SimpleNamespace(isosurface_threshold=0.0)

    def isosurface(self) -> Mesh:
        return self.mesh

    def export(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": points}


class PBRMaterial:
    def __init__(self, names=("albedo", "metallic", "roughness", "bump")):
        self.names = names

    def export(self, features: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        out = {k: v for k, v in channels(features).items() if k in self.names}
        return {**out, "unknown_channel": features}  # ignored by the exporter


def sphere(unwrapped: bool = True) -> Mesh:
    mesh = Mesh.from_trimesh(trimesh.creation.icosphere(subdivisions=2, radius=0.9))
    if unwrapped:
        mesh.unwrap_uv()
    return mesh


def export(tmp_path: Path, mesh: Mesh, material=None, name: str = "out", **cfg) -> list[Path]:
    system = SimpleNamespace(geometry=FakeGeometry(mesh), material=material or PBRMaterial())
    options = {"texture_size": SIZE, "texture_format": "png", "rasterizer_backend": "torch"}
    return export_atomically(MeshExporter({**options, **cfg}), system, tmp_path / name)


def texel_samples(tm: trimesh.Trimesh, size: int, n_faces: int = 40):
    """``(row, col, surface point)`` at texel centres inside faces of the loaded mesh, found
    from its UVs in trimesh's convention (``v`` up: image row ``(1 - v) * size``)."""
    uv = np.asarray(tm.visual.uv, dtype=np.float64)
    pos = np.asarray(tm.vertices, dtype=np.float64)
    samples = []
    faces = np.asarray(tm.faces)
    e1, e2 = uv[faces[:, 1]] - uv[faces[:, 0]], uv[faces[:, 2]] - uv[faces[:, 0]]
    area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    for face in faces[np.argsort(-area)[:n_faces]]:
        centre = uv[face].mean(0)
        col, row = int(centre[0] * size), int((1.0 - centre[1]) * size)
        texel = np.array([(col + 0.5) / size, 1.0 - (row + 0.5) / size])
        corners = uv[face]
        m = np.stack([corners[1] - corners[0], corners[2] - corners[0]], 1)
        b12 = np.linalg.solve(m, texel - corners[0])
        bary = np.array([1.0 - b12.sum(), *b12])
        if bary.min() > 0.02:
            samples.append((row, col, bary @ pos[face]))
    assert len(samples) >= 10
    return samples


def expected_at(point: np.ndarray) -> dict[str, np.ndarray]:
    values = channels(torch.tensor(point[None], dtype=torch.float64))
    return {k: v[0].numpy() for k, v in values.items()}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.float64) / 255.0


QUANTUM = 1.0 / 255.0 + 1e-6  # 8-bit rounding (0.5 / 255) plus the texel's float32 position


def test_glb_with_pbr_channels(tmp_path):
    mesh = sphere()
    v_tex_before = mesh.v_tex.clone()
    (glb,) = export(tmp_path, mesh, fmt="glb")
    assert torch.equal(mesh.v_tex, v_tex_before)  # the mesh's atlas was kept
    gltf, values = check_glb_layout(glb)
    (material,) = gltf["materials"]
    pbr = material["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 1.0 and pbr["roughnessFactor"] == 1.0
    assert {"baseColorTexture", "metallicRoughnessTexture"} <= set(pbr)
    assert "normalTexture" in material
    # UVs in [0, 1] and exactly the mesh's atlas (glTF v = ours: the image's first row is v = 0)
    assert values["TEXCOORD_0"].min() >= 0.0 and values["TEXCOORD_0"].max() <= 1.0
    ours = torch.cat([mesh.v_pos[mesh.t_pos_idx], mesh.v_tex[mesh.t_tex_idx]], -1).reshape(-1, 5)
    raw = np.concatenate([values["POSITION"], values["TEXCOORD_0"]], 1)
    distance = np.abs(raw[:, None] - ours.numpy()[None]).max(-1)
    assert distance.min(1).max() < 1e-6 and distance.min(0).max() < 1e-6
    # TANGENT of every split vertex = Mesh.v_tng / v_tng_sign of its position vertex
    which = np.abs(values["POSITION"][:, None] - mesh.v_pos.numpy()[None]).max(-1).argmin(1)
    np.testing.assert_allclose(values["TANGENT"][:, :3], mesh.v_tng.numpy()[which], atol=1e-6)
    np.testing.assert_array_equal(values["TANGENT"][:, 3], mesh.v_tng_sign.numpy()[which, 0])
    np.testing.assert_allclose(values["NORMAL"], mesh.v_nrm.numpy()[which], atol=1e-6)

    tm = load_glb(glb)
    maps = tm.visual.material
    images = {
        "albedo": maps.baseColorTexture,
        "metal_rough": maps.metallicRoughnessTexture,
        "bump": maps.normalTexture,
    }
    for image in images.values():
        assert image is not None and image.size == (SIZE, SIZE)  # a power of two
    base = pixels(images["albedo"].convert("RGB"))
    packed = pixels(images["metal_rough"].convert("RGB"))
    normal = pixels(images["bump"].convert("RGB"))
    assert np.all(packed[..., 0] == 1.0)  # R unused: 255
    for row, col, point in texel_samples(tm, SIZE):
        expected = expected_at(point)
        np.testing.assert_allclose(base[row, col], expected["albedo"], atol=QUANTUM)
        np.testing.assert_allclose(packed[row, col, 1], expected["roughness"][0], atol=QUANTUM)
        np.testing.assert_allclose(packed[row, col, 2], expected["metallic"][0], atol=QUANTUM)
        np.testing.assert_allclose(normal[row, col], expected["bump"], atol=QUANTUM)


def test_obj_mtl_with_pbr_channels(tmp_path):
    mesh = sphere()
    written = export(tmp_path, mesh, fmt="obj-mtl")
    names = sorted(p.name for p in written)
    assert names == [
        "model.mtl", "model.obj", "texture_kd.png", "texture_metallic.png", "texture_nrm.png",
        "texture_roughness.png",
    ]  # fmt: skip
    folder = written[0].parent
    mtl = (folder / "model.mtl").read_text().splitlines()
    for line in (
        "map_Kd texture_kd.png", "map_Pm texture_metallic.png", "map_Pr texture_roughness.png",
        "map_Bump texture_nrm.png", "norm texture_nrm.png",
    ):  # fmt: skip
        assert line in mtl
    tm = trimesh.load(folder / "model.obj", process=False)
    material = tm.visual.material
    # trimesh's MTL reader loads map_Kd as the image; every other key it keeps as text
    assert material.image is not None and material.image.size == (SIZE, SIZE)
    assert material.kwargs["map_pm"] == ["texture_metallic.png"]
    assert material.kwargs["map_pr"] == ["texture_roughness.png"]
    assert material.kwargs["map_bump"] == ["texture_nrm.png"]
    assert material.kwargs["norm"] == ["texture_nrm.png"]
    metallic = Image.open(folder / "texture_metallic.png")
    roughness = Image.open(folder / "texture_roughness.png")
    assert metallic.mode == roughness.mode == "L"  # greyscale
    base = pixels(material.image.convert("RGB"))
    metallic, roughness = pixels(metallic), pixels(roughness)
    normal = pixels(Image.open(folder / "texture_nrm.png"))
    uv = np.asarray(tm.visual.uv)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    for row, col, point in texel_samples(tm, SIZE):
        expected = expected_at(point)
        np.testing.assert_allclose(base[row, col], expected["albedo"], atol=QUANTUM)
        np.testing.assert_allclose(metallic[row, col], expected["metallic"][0], atol=QUANTUM)
        np.testing.assert_allclose(roughness[row, col], expected["roughness"][0], atol=QUANTUM)
        np.testing.assert_allclose(normal[row, col], expected["bump"], atol=QUANTUM)


def test_every_normal_map_texel_is_a_unit_normal(tmp_path):
    written = export(tmp_path, sphere(), fmt="obj-mtl", texture_size=64)
    image = pixels(Image.open(next(p for p in written if p.name == "texture_nrm.png")))
    length = np.linalg.norm(image * 2 - 1, axis=-1)
    assert np.abs(length - 1).max() < 3 * 2 / 255  # inpainted texels re-normalised too


def test_albedo_only_material_writes_no_pbr_maps(tmp_path):
    material = PBRMaterial(names=("albedo",))
    written = export(tmp_path, sphere(), material, "obj", fmt="obj-mtl")
    assert sorted(p.name for p in written) == ["model.mtl", "model.obj", "texture_kd.png"]
    mtl = (written[0].parent / "model.mtl").read_text()
    assert "map_Kd texture_kd.png" in mtl
    assert not any(key in mtl for key in ("map_Pm", "map_Pr", "map_Bump", "norm"))
    (glb,) = export(tmp_path, sphere(), material, "glb", fmt="glb")
    gltf, values = check_glb_layout(glb)
    pbr = gltf["materials"][0]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == 1.0
    assert "metallicRoughnessTexture" not in pbr and "normalTexture" not in gltf["materials"][0]
    assert set(values) == {"POSITION", "TEXCOORD_0"}


def test_metallic_and_roughness_without_bump(tmp_path):
    material = PBRMaterial(names=("albedo", "roughness"))
    (glb,) = export(tmp_path, sphere(), material, fmt="glb")
    gltf, values = check_glb_layout(glb)
    assert "TANGENT" not in values and "normalTexture" not in gltf["materials"][0]
    packed = pixels(load_glb(glb).visual.material.metallicRoughnessTexture.convert("RGB"))
    assert np.all(packed[..., 0] == 1.0) and np.all(packed[..., 2] == 0.0)  # no metallic: 0


def test_mesh_without_uvs_is_unwrapped_and_the_atlas_is_kept_otherwise(tmp_path, monkeypatch):
    mesh = sphere(unwrapped=False)
    export(tmp_path, mesh, name="a", fmt="glb")
    assert mesh.has_uv  # unwrapped by the exporter (xatlas), tangents in that atlas

    def no_unwrap(self, *args, **kwargs):
        raise AssertionError("the exporter re-unwrapped a mesh that has UVs")

    unwrapped = sphere()
    v_tex = unwrapped.v_tex.clone()
    monkeypatch.setattr(Mesh, "unwrap_uv", no_unwrap)
    written = export(tmp_path, unwrapped, name="b", fmt="obj-mtl")
    vt = [line.split()[1:] for line in written[0].read_text().splitlines() if line[:3] == "vt "]
    written_uv = np.array(vt, dtype=np.float64)
    np.testing.assert_allclose(written_uv[:, 0], v_tex[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(written_uv[:, 1], 1.0 - v_tex[:, 1].numpy(), atol=1e-6)


def test_atlas_outside_the_unit_square_is_refused(tmp_path):
    mesh = sphere()
    mesh.set_uv(mesh.v_tex * 1.5, mesh.t_tex_idx)
    with pytest.raises(StudioError, match=r"UV atlas spans \[[\d.]+, 1\.49\d*\]"):
        export(tmp_path, mesh, fmt="glb")


def test_channel_of_the_wrong_width_is_refused(tmp_path):
    class BadBump(PBRMaterial):
        def export(self, features, **kwargs):
            return {**super().export(features), "bump": features[:, :2]}

    with pytest.raises(StudioError, match=r"exports 'bump' with shape \[\d+, 2\]"):
        export(tmp_path, sphere(), BadBump(), fmt="glb")


@pytest.mark.parametrize(("size", "nearest"), [(1000, "512 or 1024"), (48, "32 or 64")])
def test_glb_texture_size_must_be_a_power_of_two(size, nearest):
    with pytest.raises(StudioError, match=rf"system\.exporter\.texture_size={size} .*{nearest}"):
        MeshExporter({"fmt": "glb", "texture_size": size})
    MeshExporter({"fmt": "obj-mtl", "texture_size": size})  # other formats take any size
    MeshExporter({"fmt": "glb", "texture_size": size, "save_texture": False})  # no texture
    MeshExporter({"fmt": "glb", "texture_size": 2048})


def test_glb_tangent_frame_follows_the_gltf_convention(tmp_path):
    """From the file alone: T points along +u and B = cross(N, T) * w towards the image's top
    (decreasing glTF v), the +Y of glTF's normal maps, at the corners of the faces (a few corners
    on chart seams, where tangents of differently oriented charts are averaged, may differ)."""
    (glb,) = export(tmp_path, sphere(), fmt="glb")
    _, values = check_glb_layout(glb)
    faces = np.asarray(load_glb(glb).faces)
    pos, uv = values["POSITION"].astype(np.float64), values["TEXCOORD_0"].astype(np.float64)
    e1, e2 = pos[faces[:, 1]] - pos[faces[:, 0]], pos[faces[:, 2]] - pos[faces[:, 0]]
    d1, d2 = uv[faces[:, 1]] - uv[faces[:, 0]], uv[faces[:, 2]] - uv[faces[:, 0]]
    det = (d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1])[:, None]
    dp_du = (d2[:, 1:] * e1 - d1[:, 1:] * e2) / det
    dp_dv = (d1[:, :1] * e2 - d2[:, :1] * e1) / det
    agree_t, agree_b = [], []
    for corner in range(3):
        tangent = values["TANGENT"][faces[:, corner]].astype(np.float64)
        normal = values["NORMAL"][faces[:, corner]].astype(np.float64)
        bitangent = np.cross(normal, tangent[:, :3]) * tangent[:, 3:]
        agree_t.append(np.einsum("fi,fi->f", tangent[:, :3], dp_du) > 0)
        agree_b.append(np.einsum("fi,fi->f", bitangent, -dp_dv) > 0)
    print(f"corners agreeing: tangent {np.mean(agree_t):.3f}, bitangent {np.mean(agree_b):.3f}")
    assert np.mean(agree_t) > 0.9 and np.mean(agree_b) > 0.9
