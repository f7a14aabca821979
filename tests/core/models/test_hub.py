"""resolve_model: local folders, the hub cache, offline failures (fast, one paragraph), gating."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from studio.errors import StudioError
from studio.models import hub
from studio.models.hub import (
    ModelNotAvailableError,
    cached_snapshot,
    hub_cache_dir,
    is_hub_id,
    list_cached_models,
    pull_model,
    resolve_model,
)
from tests.core.models.cache_layout import make_cached_repo

HUB_VARIABLES = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_HOME",
    "XDG_CACHE_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "STUDIO_OFFLINE",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)
PIPELINE = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
    "unet/config.json": b"{}",
    "unet/diffusion_pytorch_model.safetensors": b"u" * 300,
    "vae/config.json": b"{}",
    "vae/diffusion_pytorch_model.safetensors": b"v" * 200,
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache in tmp, every hub-related variable cleared (so: online mode)."""
    for name in HUB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


def forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(hub, "hub_reachable", fail)
    monkeypatch.setattr(hub, "_download", fail)


def failure(fn, *args, **kwargs) -> tuple[str, float]:
    """The message of the ModelNotAvailableError ``fn`` raises, and the seconds it took."""
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as info:
        fn(*args, **kwargs)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert "\n" not in message, message
    assert isinstance(info.value, StudioError)
    return message, elapsed


# -- names and cache folders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("runwayml/stable-diffusion-v1-5", True),
        ("DeepFloyd/IF-I-XL-v1.0", True),
        ("bert-base-uncased", True),
        ("stabilityai/stable-diffusion-2-1-base", True),
        ("/abs/path/model", False),
        ("./relative/model", False),
        ("~/models/sd", False),
        ("a/b/c", False),
        ("owner/na--me", False),
        ("owner/name.", False),
        ("owner/..", False),
        ("owner/model.git", False),
        ("C:\\models\\sd", False),
        ("", False),
    ],
)
def test_is_hub_id(name, expected):
    assert is_hub_id(name) is expected


def test_cache_dir_follows_the_environment_at_call_time(cache, monkeypatch, tmp_path):
    assert hub_cache_dir() == cache
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


# -- local folders -------------------------------------------------------------------------------


def test_local_folder_is_returned_as_is(cache, monkeypatch, tmp_path):
    forbid_network(monkeypatch)
    folder = tmp_path / "my-model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text("{}")
    assert resolve_model(str(folder)) == folder
    assert resolve_model(str(folder), subfolders=["unet"]) == folder
    monkeypatch.chdir(tmp_path)
    assert resolve_model("my-model") == Path("my-model")  # relative stays relative


def test_local_folder_missing_a_subfolder_names_it(cache, monkeypatch, tmp_path):
    forbid_network(monkeypatch)
    folder = tmp_path / "half-model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text("{}")
    (folder / "vae").mkdir()  # empty counts as missing
    message, _ = failure(resolve_model, str(folder), subfolders=["unet", "vae", "text_encoder"])
    assert str(folder) in message
    assert "has no (or empty) vae, text_encoder subfolder(s)" in message


@pytest.mark.parametrize("name", ["/nonexistent/models/sd15", "./not/here/at/all", "~/no-model/x"])
def test_missing_path_that_is_no_hub_id_names_the_path(cache, monkeypatch, name):
    forbid_network(monkeypatch)
    message, _ = failure(resolve_model, name)
    assert repr(name) in message
    assert "not a Hugging Face model id" in message
    assert "pretrained_model_name_or_path" in message


def test_a_file_is_not_a_model_folder(cache, monkeypatch, tmp_path):
    forbid_network(monkeypatch)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    message, _ = failure(resolve_model, str(weights), config_key="system.guidance.repo")
    assert "system.guidance.repo=" in message and "is a file" in message


# -- the cache -------------------------------------------------------------------------------


def test_cached_hub_id_resolves_without_network(cache, monkeypatch):
    forbid_network(monkeypatch)
    snapshot = make_cached_repo(cache, "owner/pipe", PIPELINE)
    assert resolve_model("owner/pipe") == snapshot
    assert resolve_model("owner/pipe", subfolders=["unet", "vae"]) == snapshot
    assert (snapshot / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == b"u" * 300
    # the same folder huggingface_hub itself finds in this cache
    found = huggingface_hub.snapshot_download("owner/pipe", cache_dir=cache, local_files_only=True)
    assert Path(found) == snapshot


def test_cache_found_through_hf_home(cache, monkeypatch, tmp_path):
    forbid_network(monkeypatch)
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    snapshot = make_cached_repo(tmp_path / "home" / "hub", "owner/pipe", PIPELINE)
    assert resolve_model("owner/pipe") == snapshot


def test_snapshot_without_ref_uses_the_newest(cache, monkeypatch):
    forbid_network(monkeypatch)
    make_cached_repo(cache, "owner/pipe", PIPELINE, commit="a" * 40, with_ref=False)
    newer = make_cached_repo(
        cache, "owner/pipe", {"x.json": b"{}"}, commit="b" * 40, with_ref=False
    )
    older = newer.parent / ("a" * 40)
    stamp = time.time()
    os.utime(older, (stamp - 100, stamp - 100))
    os.utime(newer, (stamp, stamp))
    assert cached_snapshot("owner/pipe") == newer


def test_cached_but_missing_subfolder_offline_names_it(cache, monkeypatch):
    snapshot = make_cached_repo(cache, "owner/pipe", PIPELINE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message, _ = failure(resolve_model, "owner/pipe", subfolders=["unet", "text_encoder"])
    assert f"the cached copy of 'owner/pipe' at {snapshot} lacks the subfolder(s) text_encoder" in (
        message
    )


# -- not cached and offline: fast, one paragraph, says how to get the model --------------------


def assert_fetch_advice(message: str, repo_id: str, cache: Path) -> None:
    assert f"Model '{repo_id}' is not available" in message
    assert str(cache / ("models--" + repo_id.replace("/", "--"))) in message  # the folder searched
    assert f"`studio models pull {repo_id}`" in message
    assert "`pretrained_model_name_or_path=/path/to/" in message  # callers name their key


def test_offline_variable_set_fails_fast_without_probing(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: pytest.fail("probed while offline"))
    message, elapsed = failure(resolve_model, "runwayml/stable-diffusion-v1-5")
    assert elapsed < 2.0
    assert_fetch_advice(message, "runwayml/stable-diffusion-v1-5", cache)
    assert "downloads are switched off by HF_HUB_OFFLINE=1" in message
    assert "licence" not in message


@pytest.mark.parametrize("variable", ["STUDIO_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_other_offline_variables(cache, monkeypatch, variable):
    monkeypatch.setenv(variable, "true")
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: pytest.fail("probed while offline"))
    message, _ = failure(resolve_model, "owner/model")
    assert f"switched off by {variable}=true" in message


def test_download_not_allowed(cache, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: pytest.fail("probed"))
    message, _ = failure(resolve_model, "owner/model", allow_download=False)
    assert "downloading is not allowed here" in message


def test_offline_unset_real_network_unavailable_fails_within_two_seconds(cache):
    """HF_HUB_OFFLINE unset: the real probe of huggingface.co (unreachable on this machine)."""
    message, elapsed = failure(resolve_model, "studio-tests/no-such-model-7f3a9c")
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert str(cache / "models--studio-tests--no-such-model-7f3a9c") in message or (
        "does not exist" in message  # only on a machine where the hub is reachable
    )
    if "could not be reached" in message:
        assert_fetch_advice(message, "studio-tests/no-such-model-7f3a9c", cache)


@pytest.fixture
def silent_endpoint(monkeypatch):
    """A hub endpoint that accepts connections and never answers (a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield
    server.close()


def test_black_holed_hub_is_given_one_short_probe(cache, silent_endpoint, monkeypatch):
    calls = []
    real = hub.hub_reachable
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: calls.append(a) or real(*a))
    message, elapsed = failure(resolve_model, "DeepFloyd/IF-I-XL-v1.0")
    assert len(calls) == 1
    assert hub.PROBE_TIMEOUT_S - 0.2 < elapsed < 2.0, f"took {elapsed:.2f} s"
    assert "could not be reached (probe timeout 1.5 s" in message
    assert_fetch_advice(message, "DeepFloyd/IF-I-XL-v1.0", cache)


def test_deepfloyd_offline_message_explains_the_licence(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message, _ = failure(resolve_model, "DeepFloyd/IF-I-XL-v1.0")
    assert_fetch_advice(message, "DeepFloyd/IF-I-XL-v1.0", cache)
    assert "https://huggingface.co/DeepFloyd/IF-I-XL-v1.0" in message
    assert "accept the licence" in message
    assert "huggingface-cli login" in message and "HF_TOKEN" in message


# -- online (the hub faked): gated answers, unknown repositories, the files fetched -------------


def http_error(cls, status: int):
    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return cls(f"{status} Client Error", response=response)


@pytest.fixture
def online(cache, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: True)


@pytest.mark.parametrize(
    ("error", "repo_id"),
    [
        (http_error(GatedRepoError, 401), "owner/gated"),
        (http_error(HfHubHTTPError, 403), "owner/restricted"),
        (http_error(RepositoryNotFoundError, 401), "DeepFloyd/IF-I-XL-v1.0"),
    ],
)
def test_gated_answers_explain_the_licence(online, monkeypatch, error, repo_id):
    def refuse(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", refuse)
    message, _ = failure(resolve_model, repo_id)
    assert f"Model '{repo_id}' refused the download" in message
    assert f"https://huggingface.co/{repo_id}" in message
    assert "accept the licence" in message and "HF_TOKEN" in message


def test_unknown_repository(online, monkeypatch):
    def missing(self, *args, **kwargs):
        raise http_error(RepositoryNotFoundError, 401)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", missing)
    message, _ = failure(resolve_model, "owner/typo-model")
    assert "Model 'owner/typo-model' does not exist on https://huggingface.co" in message
    assert "licence" not in message


def fake_info(files: dict[str, int], gated=False):
    siblings = [SimpleNamespace(rfilename=name, size=size) for name, size in files.items()]
    return SimpleNamespace(siblings=siblings, gated=gated, sha="c" * 40)


def test_gated_repository_without_token_stops_before_downloading(online, monkeypatch):
    monkeypatch.setattr(hub, "_has_token", lambda: False)
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "model_info",
        lambda self, *a, **k: fake_info({"a.json": 1}, "manual"),
    )
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("ran"))
    message, _ = failure(resolve_model, "owner/gated")
    assert "cannot be downloaded without logging in" in message and "accept the licence" in message


def test_download_fetches_the_useful_files_and_returns_the_snapshot(online, monkeypatch, cache):
    listing = {
        "model_index.json": 10,
        "v1-5-pruned.ckpt": 4_000_000,
        "unet/config.json": 5,
        "unet/diffusion_pytorch_model.bin": 3_000,
        "unet/diffusion_pytorch_model.safetensors": 3_000,
        "unet/diffusion_pytorch_model.non_ema.safetensors": 3_000,
        "vae/config.json": 5,
        "vae/diffusion_pytorch_model.safetensors": 300,
        "safety_checker/model.safetensors": 1_000,
    }
    monkeypatch.setattr(
        huggingface_hub.HfApi, "model_info", lambda self, *a, **k: fake_info(listing)
    )
    requested = {}

    def fake_snapshot_download(repo_id, **kwargs):
        requested.update(kwargs, repo_id=repo_id)
        return str(make_cached_repo(Path(kwargs["cache_dir"]), repo_id, PIPELINE))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    path = resolve_model("owner/pipe", subfolders=["unet", "vae"])
    assert path == cache / "models--owner--pipe" / "snapshots" / ("0123456789abcdef" * 3)[:40]
    assert requested["repo_id"] == "owner/pipe"
    assert Path(requested["cache_dir"]) == cache
    assert sorted(requested["allow_patterns"]) == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    # cached now: resolving again touches nothing
    forbid_network(monkeypatch)
    assert resolve_model("owner/pipe", subfolders=["unet"]) == path


def test_hub_repository_without_the_requested_subfolder(online, monkeypatch):
    listing = {"model_index.json": 1, "unet/config.json": 1}
    monkeypatch.setattr(
        huggingface_hub.HfApi, "model_info", lambda self, *a, **k: fake_info(listing)
    )
    message, _ = failure(resolve_model, "owner/pipe", subfolders=["unet", "text_encoder"])
    assert "Model 'owner/pipe' on the hub has no subfolder text_encoder" in message


def test_network_failure_during_download_is_one_paragraph(online, monkeypatch):
    def broken(self, *args, **kwargs):
        raise ConnectionResetError("connection reset by peer\nwhile reading")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", broken)
    message, _ = failure(resolve_model, "owner/pipe")
    assert "Downloading model 'owner/pipe' from https://huggingface.co failed" in message
    assert "ConnectionResetError: connection reset by peer while reading" in message
    assert "`studio models pull owner/pipe` again" in message


def test_pull_refreshes_when_online_and_keeps_the_cache_offline(cache, monkeypatch):
    snapshot = make_cached_repo(cache, "owner/pipe", PIPELINE)
    downloads = []
    monkeypatch.setattr(hub, "hub_reachable", lambda *a: True)
    monkeypatch.setattr(hub, "_download", lambda *a: downloads.append(a) or snapshot)
    assert pull_model("owner/pipe") == snapshot
    assert len(downloads) == 1  # a cached model is still brought up to date
    monkeypatch.setenv("STUDIO_OFFLINE", "1")
    assert pull_model("owner/pipe") == snapshot  # offline: the complete cached copy
    assert len(downloads) == 1


# -- listing the cache -------------------------------------------------------------------------


def test_list_cached_models(cache):
    assert list_cached_models() == []  # the cache folder does not exist yet
    cache.mkdir()
    assert list_cached_models() == []  # exists, empty
    pipe = make_cached_repo(cache, "owner/pipe", PIPELINE)
    small = make_cached_repo(cache, "another/small", {"config.json": b"{" + b" " * 40 + b"}"})
    make_cached_repo(cache, "owner/data", {"train.csv": b"a,b"}, repo_type="dataset")
    models = list_cached_models()
    assert [m.repo_id for m in models] == ["another/small", "owner/pipe"]
    assert [m.path for m in models] == [small, pipe]
    pipe_bytes = sum(len(v) for v in {bytes(v) for v in PIPELINE.values()})  # blobs dedupe
    assert [m.size_bytes for m in models] == [42, pipe_bytes]
    repo_id, size, path = models[1]  # plain tuples too
    assert (repo_id, size, path) == ("owner/pipe", pipe_bytes, pipe)


def test_format_size():
    assert hub.format_size(0) == "0 B"
    assert hub.format_size(1023) == "1023 B"
    assert hub.format_size(1536) == "1.5 KB"
    assert hub.format_size(5 * 1024**3) == "5.0 GB"
