"""bench/prolificdreamer.py's offline parts: its rows (presets, overrides, first steps) as shipped,
the LoRA-base folder it writes, and every kind of row built and stepped on the CPU with tiny
models and tiny sizes (the GPU measurement itself runs on the device)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.bench.loading import load_bench

TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=8,
    use_linear_projection=True,
)
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(16, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=16,
)
HASH_GRID = [
    "system.geometry.pos_encoding_config.n_levels=4",
    "system.geometry.pos_encoding_config.log2_hashmap_size=12",
]
#: preset -> overrides that shrink it to a CPU step (sizes 8 before / 16 after the milestone)
TINY = {
    "prolificdreamer": [
        "data.width=[8,16]",
        "data.height=[8,16]",
        "system.renderer.num_samples_per_ray=16",
        *HASH_GRID,
    ],
    "dreamfusion-sd": [
        "data.width=8",
        "data.height=8",
        "system.renderer.num_samples_per_ray=16",
        "system.geometry.pos_encoding_config.start_level=2",
        *HASH_GRID,
    ],
    "prolificdreamer-geometry": [
        "data.width=16",
        "data.height=16",
        "system.geometry.isosurface_resolution=16",
    ],
    "prolificdreamer-texture": [
        "data.width=16",
        "data.height=16",
        "system.geometry.isosurface_resolution=16",
        *HASH_GRID,
    ],
}


@pytest.fixture(scope="module")
def modules() -> tuple[ModuleType, ModuleType]:
    """``(bench/prolificdreamer.py, the bench/dreamfusion.py it imports)``."""
    module = load_bench("prolificdreamer")
    return module, sys.modules["dreamfusion"]


@pytest.fixture(scope="module")
def bench(modules: tuple[ModuleType, ModuleType]) -> ModuleType:
    return modules[0]


@pytest.fixture(scope="module")
def tiny_models(modules: tuple[ModuleType, ModuleType], tmp_path_factory: pytest.TempPathFactory):
    """The bench's two folders with tiny models: an epsilon pipeline (unet, vae, scheduler, model
    index, as bench/dreamfusion.py writes) and a separate v-prediction LoRA base."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    bench, dreamfusion = modules
    root = tmp_path_factory.mktemp("models")
    pretrained = root / "sd21-base"
    torch.manual_seed(0)
    UNet2DConditionModel(**TINY_UNET).save_pretrained(pretrained / "unet")
    AutoencoderKL(**TINY_VAE).save_pretrained(pretrained / "vae")
    DDIMScheduler(**bench.SD21_SCHEDULER).save_pretrained(pretrained / "scheduler")
    dreamfusion.write_model_index(
        pretrained,
        "StableDiffusionPipeline",
        {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "scheduler": "DDIMScheduler"},
    )
    lora_base = bench.build_lora_base(root / "sd21-v", TINY_UNET, device="cpu")
    return bench.ModelPaths(pretrained, lora_base)


# -- the rows as shipped ----------------------------------------------------------------------


def test_row_selection(bench: ModuleType) -> None:
    assert len(bench.select_rows("all")) == 10
    assert bench.select_rows("particles") == ["coarse-64", "coarse-64-k4"]
    # the K=4 row brings its K=1 baseline; table order whatever the order asked
    assert bench.select_rows("coarse-64-k4,texture-512") == [
        "coarse-64",
        "texture-512",
        "coarse-64-k4",
    ]
    assert bench.select_rows("precision") == [
        "coarse-64",
        "coarse-512",
        "coarse-64-16-mixed",
        "coarse-64-bf16-mixed",
        "coarse-512-16-mixed",
        "coarse-512-bf16-mixed",
    ]
    with pytest.raises(ValueError, match="unknown row 'coarse-128'"):
        bench.select_rows("coarse-128")
    args = bench.parse_args(["--quick", "--rows", "stages", "--lora-base", "shared"])
    assert args.quick and args.lora_base == "shared" and len(args.rows) == 5
    assert bench.parse_args([]).lora_base == "separate"
    with pytest.raises(SystemExit):
        bench.parse_args(["--rows", "nope"])


#: row -> (render size at its first step, precision, particles, guidance type)
SHIPPED = {
    "coarse-64": (64, "32", 1, "stable-diffusion-vsd"),
    "coarse-512": (512, "32", 1, "stable-diffusion-vsd"),
    "dreamfusion-sd": (64, "16-mixed", 1, "stable-diffusion"),
    "geometry-512": (512, "32", 1, "stable-diffusion"),
    "texture-512": (512, "32", 1, "stable-diffusion-vsd"),
    "coarse-64-16-mixed": (64, "16-mixed", 1, "stable-diffusion-vsd"),
    "coarse-64-bf16-mixed": (64, "bf16-mixed", 1, "stable-diffusion-vsd"),
    "coarse-512-16-mixed": (512, "16-mixed", 1, "stable-diffusion-vsd"),
    "coarse-512-bf16-mixed": (512, "bf16-mixed", 1, "stable-diffusion-vsd"),
    "coarse-64-k4": (64, "32", 4, "stable-diffusion-vsd"),
}


def test_rows_are_the_presets_as_shipped(bench: ModuleType) -> None:
    from studio.registry import get_registry

    assert set(SHIPPED) == set(bench.ROWS)
    for name, (size, precision, particles, guidance) in SHIPPED.items():
        row = bench.ROWS[name]
        experiment = bench.row_experiment(row)
        data = get_registry().load("data", experiment.data_type)(
            experiment.data, device=torch.device("cpu"), config_path="data"
        )
        # the first step, and every step timed after it (at most 8 warm-ups + 30), on one side
        # of the resolution milestone
        for step in (row.first_step, row.first_step + 38):
            data.update_step(0, step)
            assert (data.width, data.height, data.batch_size) == (size, size, 1), name
        assert str(experiment.trainer.precision) == precision, name
        system = experiment.system
        assert system.get("num_particles", 1) == particles, name
        assert system["guidance_type"] == guidance, name
        assert not system.get("geometry_convert_from"), name
        assert row.sphere == (system["geometry_type"] == "tetrahedra-sdf-grid"), name
    # the reference's two models: the LoRA's base is another model than the pretrained one
    guidance = bench.row_experiment(bench.ROWS["coarse-64"]).system["guidance"]
    assert (
        guidance["pretrained_model_name_or_path_lora"] != guidance["pretrained_model_name_or_path"]
    )
    assert bench.reference_vram("coarse-64", False) == "~15 GB"
    assert bench.reference_vram("coarse-512-bf16-mixed", False) == "~30 GB"
    assert bench.reference_vram("coarse-64-k4", False) == ""
    assert bench.reference_vram("texture-512", False) == ""


def test_lora_base_is_sd21_sized(bench: ModuleType) -> None:
    from diffusers import UNet2DConditionModel

    # SD 2.1 (768-v): 2.1-base's 865.9M-parameter UNet (tests/bench/test_dreamfusion_bench.py
    # checks that one); only keys that set no parameter differ
    differing = {k for k in bench.SD21_V_UNET if bench.SD21_V_UNET[k] != bench.SD21_UNET.get(k)}
    assert differing == {"sample_size", "upcast_attention"}
    with torch.device("meta"):
        unet = UNet2DConditionModel(**bench.SD21_V_UNET)
    assert 860e6 < sum(p.numel() for p in unet.parameters()) < 870e6
    assert unet.config.upcast_attention and unet.config.sample_size == 96


def test_guidance_loads_two_models_by_default(bench: ModuleType, tiny_models) -> None:
    row = bench.ROWS["coarse-64"]
    experiment = bench.row_experiment(row, TINY[row.preset])
    guidance = bench.make_guidance(experiment, tiny_models, torch.device("cpu"))
    assert not tiny_models.shared and not guidance.models.single_model
    assert guidance.models.unet_lora is not guidance.models.unet
    assert (guidance.prediction_type, guidance.lora_prediction_type) == ("epsilon", "v_prediction")
    shared = bench.ModelPaths(tiny_models.pretrained, tiny_models.pretrained)
    assert bench.make_guidance(experiment, shared, torch.device("cpu")).models.single_model


# -- every kind of row, one step on the CPU ---------------------------------------------------


def geometry_states(system) -> list[list[torch.Tensor]]:
    """Copies of every particle's geometry parameters."""
    states = []
    for particle in system.particle_indices():
        with system.use_particle(particle):
            states.append([p.detach().clone() for p in system.geometry.parameters()])
    return states


def changed(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


#: row -> the size the tiny harness renders at its first step
CPU_ROWS = {
    "coarse-512-bf16-mixed": "16x16",
    "coarse-64-k4": "8x8 x4",
    "dreamfusion-sd": "8x8",
    "geometry-512": "16x16",
    "texture-512": "16x16",
}


@pytest.mark.parametrize("name", list(CPU_ROWS))
def test_row_steps_on_the_cpu(bench: ModuleType, tiny_models, name: str) -> None:
    torch.manual_seed(0)
    row = bench.ROWS[name]
    cpu = torch.device("cpu")
    harness = bench.build_harness(row, tiny_models, cpu, prompt_width=32, extra=TINY[row.preset])
    trainer, system = harness.trainer, harness.trainer.system
    assert harness.size == CPU_ROWS[name]
    if row.sphere:  # a closed surface around the origin
        mesh = system.geometry.isosurface()
        radius = mesh.v_pos.norm(dim=-1)
        assert mesh.n_faces > 0 and 0.35 < radius.mean() < 0.65
    assert trainer.autocast_dtype == (torch.bfloat16 if "bf16" in name else None)
    assert system.cfg.num_particles == (4 if name.endswith("k4") else 1)

    before = geometry_states(system)
    harness.guidance_only()
    assert all(p.grad is None for g in trainer.optimizer.param_groups for p in g["params"])
    harness.render_only()
    assert not any(map(changed, before, geometry_states(system)))
    harness.step()
    harness.step()
    assert trainer.global_step == row.first_step + 2
    assert all(map(changed, before, geometry_states(system)))  # every particle is trained
    if system.cfg.guidance_type == "stable-diffusion-vsd":  # and the LoRA: its zero-init "up"
        ups = [adapter["up"].weight for adapter in system.guidance.lora_layers.adapters.values()]
        assert all(up.abs().sum() > 0 for up in ups)
    for group in trainer.optimizer.param_groups:
        assert all(torch.isfinite(p).all() for p in group["params"]), group["name"]


# -- the output -------------------------------------------------------------------------------


def test_table_prints_every_row_the_reference_and_the_particle_ratio(
    bench: ModuleType, capsys: pytest.CaptureFixture
) -> None:
    def result(full: float, peak: float, size: str = "64x64", precision: str = "32") -> dict:
        return dict(
            render=1.0, guidance=full / 2, full=full, peak=peak, reserved=peak + 1, size=size
        ) | {"precision": precision}

    results = {
        "coarse-64": result(100.0, 12.0),
        "coarse-512": result(900.0, 28.0, "512x512"),
        "coarse-512-bf16-mixed": result(600.0, 20.0, "512x512", "bf16-mixed"),
        "coarse-64-k4": result(300.0, 14.0, "64x64 x4"),
    }
    models = bench.ModelPaths(Path("a"), Path("b"))
    bench.print_tables(results, models, 10, "GPU")
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| coarse-")]
    assert [line.split(" | ")[0] for line in rows] == [f"| {name}" for name in results]
    assert rows[0].endswith("| 12.00 GiB | 13.00 GiB | ~15 GB |")
    assert rows[1].endswith("| ~30 GB |") and rows[2].endswith("| ~30 GB |")
    assert rows[3].endswith("| 14.00 GiB | 15.00 GiB |  |")  # K=4: no published figure
    assert "two UNets, as the reference" in out
    assert "| 512x512 | 900.0 ms / 28.00 GiB | - | 600.0 ms / 20.00 GiB | ~30 GB |" in out
    assert "K=4 step 300.0 ms = 0.75 x (4 x the K=1 step 100.0 ms)" in out


def test_main_without_cuda_skips(bench: ModuleType, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--quick", "--rows", "particles"]) == 0
    assert "needs CUDA" in capsys.readouterr().out
