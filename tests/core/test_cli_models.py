"""`studio models pull|list` and the doctor's model-cache line, run as subprocesses."""

from __future__ import annotations

import sys

from tests.core.models.cache_layout import make_cached_repo

QUIET_HUB = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "STUDIO_OFFLINE": "0"}


def hub_env(cache, **extra: str) -> dict[str, str]:
    return {**QUIET_HUB, "HF_HUB_CACHE": str(cache), **extra}


def fill_cache(cache):
    pipe = make_cached_repo(
        cache,
        "owner/pipe",
        {"model_index.json": b"{}", "unet/config.json": b"{ }", "unet/w.safetensors": b"w" * 2000},
    )
    small = make_cached_repo(cache, "tiny/model", {"config.json": b"{}"})
    return pipe, small


def test_list_empty_cache(studio_cli, tmp_path):
    cache = tmp_path / "no-cache-yet"
    result = studio_cli.run("models", "list", **hub_env(cache))
    assert result.returncode == 0, result.stderr
    hub_part = result.stdout.strip().split("\n\n")[0]  # installed plugins' embedded models follow
    assert hub_part == f"no models cached (cache: {cache})"


def test_list_shows_id_size_and_path(studio_cli, tmp_path):
    cache = tmp_path / "hf"
    pipe, small = fill_cache(cache)
    result = studio_cli.run("models", "list", **hub_env(cache))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().split("\n\n")[0].splitlines()
    assert lines[0].split() == ["MODEL", "SIZE", "PATH"]
    assert lines[1].split() == ["owner/pipe", "2.0", "KB", str(pipe)]  # 2 + 3 + 2000 bytes
    assert lines[2].split() == ["tiny/model", "2", "B", str(small)]
    assert lines[3] == f"cache: {cache}"


def test_pull_offline_not_cached_is_one_paragraph(studio_cli, tmp_path):
    cache = tmp_path / "hf"
    result = studio_cli.run(
        "models", "pull", "owner/absent", timeout=60, **hub_env(cache, HF_HUB_OFFLINE="1")
    )
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith("error: Model 'owner/absent' is not available")
    assert "\n" not in message and "Traceback" not in message
    assert str(cache / "models--owner--absent") in message
    assert "`studio models pull owner/absent` on a machine with network access" in message
    assert not cache.exists()  # nothing half-created


def test_pull_unreachable_hub_fails_fast(studio_cli, tmp_path):
    """No offline variable: the one short probe of the real (here unreachable) hub decides."""
    result = studio_cli.run(
        "models", "pull", "studio-tests/no-such-model-7f3a9c", timeout=60, **hub_env(tmp_path)
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_pull_offline_cached_prints_the_snapshot(studio_cli, tmp_path):
    cache = tmp_path / "hf"
    pipe, small = fill_cache(cache)
    result = studio_cli.run(
        "models", "pull", "owner/pipe", "tiny/model", **hub_env(cache, STUDIO_OFFLINE="1")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"owner/pipe: {pipe}", f"tiny/model: {small}"]


def test_pull_offline_cached_missing_subfolder(studio_cli, tmp_path):
    cache = tmp_path / "hf"
    fill_cache(cache)
    result = studio_cli.run(
        "models", "pull", "owner/pipe", "-s", "unet", "-s", "vae",
        **hub_env(cache, STUDIO_OFFLINE="1"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "lacks the subfolder(s) vae" in result.stderr


def test_doctor_counts_cached_models(studio_cli, tmp_path):
    cache = tmp_path / "hf"
    fill_cache(cache)
    result = studio_cli.run("doctor", **hub_env(cache))
    assert result.returncode == 0, result.stderr
    assert f"model cache: {cache} (2 models)" in result.stdout.splitlines()


PROBE = """
import sys
from studio.cli.app import main
sys.argv = ["studio", "models", "list"]
try:
    main()
except SystemExit:
    pass
print("TORCH_IMPORTED=" + str("torch" in sys.modules), file=sys.stderr)
"""


def test_models_list_imports_no_torch(studio_cli, tmp_path):
    import subprocess

    fill_cache(tmp_path / "hf")
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=studio_cli.env(**hub_env(tmp_path / "hf")),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "owner/pipe" in result.stdout
    assert "TORCH_IMPORTED=False" in result.stderr, result.stderr
