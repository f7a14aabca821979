"""A system built from registered parts trains through the core trainer and writes
validation grids (rgb | normal | opacity) and the test video."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from studio.cli.app import app
from studio.data.random_camera import RandomCameraDataModule
from studio.hookspecs import hookimpl
from studio.io.images import read_video
from studio.systems.lift3d import BaseLift3DSystem
from tests.plugins.dreamfusion.scene import render_flat


class SphereFitSystem(BaseLift3DSystem):
    """Supervised by the analytic scene along the random cameras' rays."""

    def training_step(self, batch):
        out = self.renderer(**batch)
        target = render_flat(batch["rays_o"].cpu(), batch["rays_d"].cpu()).to(out["comp_rgb"])
        loss = F.mse_loss(out["comp_rgb"], target)
        return {"loss": loss, "opacity": out["opacity"].mean()}


class Plugin:
    @hookimpl
    def studio_register_methods(self, register):
        register("sphere-fit", f"{__name__}:SphereFitSystem", preset=None, description="test")


CONFIG = {
    "method": "sphere-fit",
    "name": "spheres",
    "tag": "fit",
    "data_type": "random-camera",
    "data": {
        "batch_size": 2,
        "height": 16,
        "width": 16,
        "eval_height": 24,
        "eval_width": 24,
        "n_val_views": 2,
        "n_test_views": 4,
        "camera_distance_range": [2.0, 2.5],
        "eval_camera_distance": 2.5,
        "fovy_range": [40, 50],
        "eval_fovy_deg": 45,
    },
    "system": {
        "geometry_type": "implicit-volume",
        "geometry": {
            "radius": 1.0,
            "normal_type": "analytic",
            "pos_encoding_config": {
                "otype": "HashGrid",
                "n_levels": 4,
                "n_features_per_level": 2,
                "log2_hashmap_size": 12,
                "base_resolution": 8,
                "per_level_scale": 1.5,
            },
        },
        "material_type": "no-material",
        "background_type": "solid-color",
        "renderer_type": "nerf-volume",
        "renderer": {"radius": 1.0, "num_samples_per_ray": 32, "backend": "torch"},
        "optimizer": {"name": "Adam", "args": {"lr": 0.01}, "params": {"geometry": {"lr": 0.01}}},
    },
    "trainer": {"max_steps": 4, "val_check_interval": 2, "enable_progress_bar": False},
}


def test_lift3d_system_through_the_trainer(studio_plugin, tmp_path):
    import yaml

    studio_plugin(Plugin(), name="sphere-fit")
    config = tmp_path / "spheres.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "exp_root_dir": str(tmp_path / "out")}))
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "out" / "spheres").iterdir()
    import imageio.v3 as iio

    grid = iio.imread(run_dir / "save" / "it4-1.png")
    assert grid.shape == (24, 72, 3)  # rgb | normal | opacity
    video = read_video(run_dir / "save" / "it4-test.mp4")
    assert video.shape[:3] == (4, 24, 72)
    state = torch.load(run_dir / "ckpts" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("geometry.encoding") for k in state)
    assert not any(k.startswith("renderer.geometry") for k in state)  # parts stored once
    assert RandomCameraDataModule  # the core data module drove the run
