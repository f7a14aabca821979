"""SJC's emptiness loss on the two ray-marching backends (GPU machine)."""

from __future__ import annotations

import pytest
import torch

from studio_sjc.losses import emptiness_loss
from tests.plugins.sjc.scene import camera_rays, latent_field, latent_renderer

pytestmark = pytest.mark.gpu


def test_emptiness_is_the_same_on_the_torch_and_nerfacc_paths():
    geometry = latent_field(seed=1, size=48).cuda()
    o, d = (x.cuda() for x in camera_rays(64))
    light = torch.zeros(1, 3, device="cuda")
    outs = {}
    for backend in ("torch", "nerfacc"):
        renderer = latent_renderer(geometry, backend, samples=512)
        for module in (renderer, renderer.material, renderer.background):  # parts are not
            module.cuda().train()  # the renderer's sub-modules (the system owns them)
        out = renderer(rays_o=o, rays_d=d, light_positions=light)
        outs[backend] = (out, emptiness_loss(out["weights"], 10.0))
    (t_out, t_loss), (n_out, n_loss) = outs["torch"], outs["nerfacc"]
    print(
        f"samples torch {t_out['weights'].shape[0]} nerfacc {n_out['weights'].shape[0]}; "
        f"emptiness torch {t_loss.item():.6f} nerfacc {n_loss.item():.6f}"
    )
    # the same samples (nerfacc's float32 stepping may move a boundary sample by one)
    assert abs(t_out["weights"].shape[0] - n_out["weights"].shape[0]) <= 64 * 64 * 0.002
    assert abs(t_loss.item() / n_loss.item() - 1) < 2e-3
    torch.testing.assert_close(t_out["opacity"], n_out["opacity"], atol=2e-3, rtol=0)
    torch.testing.assert_close(t_out["comp_rgb"], n_out["comp_rgb"], atol=5e-3, rtol=0)
