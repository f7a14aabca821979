"""Split-sum shading of a metallic-roughness material under an :class:`EnvironmentLight`.

The model of the reference's PBR material: with ``F0 = 0.04 (1 - m) + m * albedo``,

    colour = (1 - m) * albedo * E(n) / pi  +  (F0 * A + B) * P(r, roughness),   r = 2 (n.v) n - v

(``v`` towards the camera, ``r`` its mirror image about the normal), where ``E(n) / pi`` is :meth:`EnvironmentLight.diffuse`, ``P`` the GGX-prefiltered radiance
(:meth:`EnvironmentLight.specular`) and ``(A, B)`` the split-sum table at ``(n.v, roughness)``
(:func:`~studio_fantasia3d.lighting.lut.brdf_lut`). It approximates the rendering equation
with a Lambertian diffuse lobe plus the GGX microfacet BRDF of
:mod:`~studio_fantasia3d.lighting.ggx`; it is exact for a constant environment.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from studio_fantasia3d.lighting.ggx import reflect
from studio_fantasia3d.lighting.light import EnvironmentLight
from studio_fantasia3d.lighting.lut import brdf_lut, lookup_brdf

#: the dielectric reflectance at normal incidence
DIELECTRIC_F0 = 0.04


def shade_split_sum(
    light: EnvironmentLight,
    albedo: Tensor,
    metallic: Tensor,
    roughness: Tensor,
    normal: Tensor,
    view_dir: Tensor,
    *,
    lut: Tensor | None = None,
) -> Tensor:
    """Outgoing radiance ``[..., 3]`` of surface points: ``albedo [..., 3]``, ``metallic [..., 1]``,
    ``roughness [..., 1]``, ``normal [..., 3]`` (normalised here), ``view_dir [..., 3]`` (unit,
    from the surface towards the camera). ``lut`` defaults to :func:`brdf_lut` on the normal's
    device. Differentiable w.r.t. albedo, metallic, roughness and normal."""
    normal = F.normalize(normal, dim=-1)
    if lut is None:
        lut = brdf_lut(device=normal.device)
    n_dot_v = (normal * view_dir).sum(-1, keepdim=True).clamp(1e-4, 1.0)
    f0 = DIELECTRIC_F0 * (1.0 - metallic) + metallic * albedo
    scale_bias = lookup_brdf(lut, n_dot_v, roughness)
    specular_weight = f0 * scale_bias[..., :1] + scale_bias[..., 1:]
    diffuse = (1.0 - metallic) * albedo * light.diffuse(normal)
    specular = specular_weight * light.specular(reflect(view_dir, normal), roughness)
    return diffuse + specular
