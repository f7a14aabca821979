"""Split-sum image-based lighting in plain PyTorch (CPU and CUDA alike).

* :mod:`.equirect`: the z-up equirectangular mapping and bilinear lookups;
* :mod:`.environment`: the procedural sky and ``.hdr``/``.exr`` loading;
* :mod:`.prefilter`: diffuse irradiance and GGX-prefiltered specular maps;
* :mod:`.ggx`: the microfacet terms; :mod:`.lut`: the split-sum table;
* :mod:`.light`: :class:`EnvironmentLight`; :mod:`.shading`: :func:`shade_split_sum`.
"""

from studio_fantasia3d.lighting.environment import SkyParams
from studio_fantasia3d.lighting.light import EnvironmentLight
from studio_fantasia3d.lighting.lut import brdf_lut, lookup_brdf
from studio_fantasia3d.lighting.shading import shade_split_sum

__all__ = ["EnvironmentLight", "SkyParams", "brdf_lut", "lookup_brdf", "shade_split_sum"]
