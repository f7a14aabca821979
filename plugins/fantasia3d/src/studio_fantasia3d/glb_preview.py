"""Render an exported PBR glb with the texture stage's own shading (to check an export).

:func:`load_pbr_glb` reads what the mesh exporter writes for ``pbr-material``: positions, normals,
UVs, the ``TANGENT`` attribute and the three textures (base colour; metallic-roughness with
roughness in G and metallic in B; the tangent-space normal map). :func:`render_pbr_asset`
rasterizes it through given cameras and shades every pixel as :class:`PBRMaterial` does, from the
textures instead of the feature field::

    albedo = base(uv); roughness = mr(uv).g; metallic = mr(uv).b
    n' = perturb_normal(n, t, sign, 2 normal_map(uv) - 1)
    rgb = clamp(split_sum(light, albedo, metallic, roughness, n', v), 0, 1)

composited over a solid background with the renderer's antialiasing. A faithful export renders
like the texture stage from any view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from studio.api import Rasterizer, read_glb_vertex_attribute
from studio_fantasia3d.lighting import shade_split_sum
from studio_fantasia3d.materials.pbr import PBRMaterial, perturb_normal


@dataclass
class PBRAsset:
    """A loaded PBR mesh: ``v_pos``, ``v_nrm`` ``[V, 3]``, ``v_tng`` ``[V, 4]`` (xyz, sign),
    ``uv [V, 2]`` (``v = 0`` at the images' first row), ``faces [F, 3]``, and ``base_color``,
    ``metallic_roughness``, ``normal_map`` ``[H, W, 3]`` in ``[0, 1]``."""

    v_pos: torch.Tensor
    v_nrm: torch.Tensor
    v_tng: torch.Tensor
    uv: torch.Tensor
    faces: torch.Tensor
    base_color: torch.Tensor
    metallic_roughness: torch.Tensor
    normal_map: torch.Tensor

    def to(self, device: torch.device | str) -> PBRAsset:
        return PBRAsset(**{k: v.to(device) for k, v in self.__dict__.items()})


def _image(picture: Any) -> torch.Tensor:
    pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels)


def load_pbr_glb(path: str | Path) -> PBRAsset:
    """The mesh, tangents and PBR textures of a glb written by the mesh exporter."""
    import trimesh

    data = Path(path).read_bytes()
    scene = trimesh.load(path, process=False, force="scene")
    (mesh,) = scene.geometry.values()
    material = mesh.visual.material
    tangents = read_glb_vertex_attribute(data, "TANGENT")
    missing = [
        name
        for name, value in (
            ("TANGENT", tangents),
            ("baseColorTexture", material.baseColorTexture),
            ("metallicRoughnessTexture", material.metallicRoughnessTexture),
            ("normalTexture", material.normalTexture),
        )
        if value is None
    ]
    if missing:
        raise ValueError(f"{path} is not a PBR export of pbr-material: no {', '.join(missing)}")
    uv = np.asarray(mesh.visual.uv, dtype=np.float32)
    return PBRAsset(
        v_pos=torch.tensor(np.asarray(mesh.vertices), dtype=torch.float32),
        v_nrm=torch.tensor(np.asarray(mesh.vertex_normals), dtype=torch.float32),
        v_tng=torch.from_numpy(tangents),
        uv=torch.from_numpy(np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)),  # trimesh's v is up
        faces=torch.tensor(np.asarray(mesh.faces), dtype=torch.long),
        base_color=_image(material.baseColorTexture),
        metallic_roughness=_image(material.metallicRoughnessTexture),
        normal_map=_image(material.normalTexture),
    )


def render_pbr_asset(
    asset: PBRAsset,
    material: PBRMaterial,
    rasterizer: Rasterizer,
    mvp_mtx: torch.Tensor,
    camera_positions: torch.Tensor,
    height: int,
    width: int,
    background: torch.Tensor,
) -> torch.Tensor:
    """``[B, H, W, 3]`` renders of ``asset`` through the cameras ``mvp_mtx [B, 4, 4]`` placed at
    ``camera_positions [B, 3]``, shaded with ``material``'s light and split-sum table over the
    solid ``background [3]``."""
    v_pos, tri = asset.v_pos, asset.faces
    homogeneous = torch.cat([v_pos, torch.ones_like(v_pos[:, :1])], dim=-1)
    pos_clip = homogeneous @ mvp_mtx.to(v_pos).transpose(1, 2)
    rast = rasterizer.rasterize(pos_clip, tri, (height, width))
    mask = (rast[..., 3:] > 0).to(v_pos.dtype)
    selector = mask[..., 0] > 0
    image = background.to(v_pos).expand(*mask.shape[:3], 3).clone()
    if bool(selector.any()):
        uv = rasterizer.interpolate(asset.uv, rast, tri)

        def sample(texture: torch.Tensor) -> torch.Tensor:
            return rasterizer.texture(texture[None], uv, boundary_mode="clamp")[selector]

        positions = rasterizer.interpolate(v_pos, rast, tri)[selector]
        normal = F.normalize(rasterizer.interpolate(asset.v_nrm, rast, tri)[selector], dim=-1)
        frame = rasterizer.interpolate(asset.v_tng, rast, tri)[selector]
        sign = torch.where(frame[:, 3:] < 0, -1.0, 1.0).to(frame)
        mr = sample(asset.metallic_roughness)
        bump = F.normalize(sample(asset.normal_map) * 2.0 - 1.0, dim=-1)
        if material.cfg.use_bump:
            normal = perturb_normal(normal, frame[:, :3], sign, bump)
        cameras = camera_positions.to(v_pos)[:, None, None, :].expand(*selector.shape, 3)
        view = F.normalize(cameras[selector] - positions, dim=-1)
        color = shade_split_sum(
            material.light(v_pos.device),
            sample(asset.base_color),
            mr[:, 2:3],
            mr[:, 1:2],
            normal,
            view,
            lut=material.lut(v_pos.device),
        ).clamp(0.0, 1.0)
        image = torch.index_put(image, (selector,), color)
    return rasterizer.antialias(image, rast, pos_clip, tri)
