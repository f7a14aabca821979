"""Pretrained models from a local folder or the Hugging Face hub, downloading only when possible.

:func:`resolve_model` turns a ``pretrained_model_name_or_path`` value into a local folder:

* an existing folder is returned as is;
* a name registered by a plugin through ``studio_register_models`` (an embedded model, see
  :mod:`studio.models.embedded`) gives the folder its callable returns;
* a hub id (``owner/name``, or a legacy single ``name``) is looked up in the Hugging Face cache
  (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``, read at call time)
  without any network access; a cached snapshot is returned;
* otherwise, unless downloads are off (``STUDIO_OFFLINE``, ``HF_HUB_OFFLINE`` or
  ``TRANSFORMERS_OFFLINE`` set to 1/true/yes/on, or ``allow_download=False``), the hub is probed
  once (HEAD request, :data:`PROBE_TIMEOUT_S` seconds, no retries) and, when it answers, the
  useful files (:func:`studio.models.files.select_files`) are downloaded with progress bars.

Every way of failing raises :class:`ModelNotAvailableError`, one paragraph naming the model,
the cache folder searched and how to get the model (``studio models pull NAME`` on a machine
with network, or a local folder passed by path); gated models (DeepFloyd IF) also get the
licence steps. Not cached and offline fails within about :data:`PROBE_TIMEOUT_S` seconds.

Only cheap modules are imported at module level; ``huggingface_hub`` is imported on use.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Optional

from studio.errors import ModelNotAvailableError, one_line
from studio.models.embedded import DEFAULT_CONFIG_KEY, locate, provider, registered_names

PROBE_TIMEOUT_S = 1.5
OFFLINE_VARIABLES = ("STUDIO_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_ENDPOINT = "https://huggingface.co"
GATED_OWNERS = ("DeepFloyd",)
_TRUE = {"1", "true", "yes", "on"}
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"(?:{_NAME}/)?{_NAME}")


class CachedModel(NamedTuple):
    """One model repository in the Hugging Face cache."""

    repo_id: str
    size_bytes: int
    path: Path  # the snapshot ``resolve_model`` returns (the repository folder if none)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment as it is now."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_endpoint() -> str:
    """The hub's base URL (``HF_ENDPOINT`` or https://huggingface.co), without trailing ``/``."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a hub model id: ``owner/name`` or a legacy ``name``."""
    return (
        bool(_HUB_ID.fullmatch(name))
        and "--" not in name
        and ".." not in name
        and not name.endswith(".git")
    )


def repo_folder(repo_id: str, cache_dir: Path | None = None) -> Path:
    """The cache folder of a model repository (``models--owner--name``)."""
    cache = hub_cache_dir() if cache_dir is None else cache_dir
    return cache / ("models--" + repo_id.replace("/", "--"))


def cached_snapshot(repo_id: str, cache_dir: Path | None = None) -> Optional[Path]:
    """The cached snapshot of ``repo_id``'s main branch, or None; never touches the network.

    The snapshot named by ``refs/main`` wins; without that file (a copied cache) the most
    recently modified snapshot is used. Empty snapshot folders count as absent.
    """
    storage = repo_folder(repo_id, cache_dir)
    snapshots = storage / "snapshots"
    ref = storage / "refs" / "main"
    candidates: list[Path] = []
    if ref.is_file():
        candidates.append(snapshots / ref.read_text().strip())
    elif snapshots.is_dir():
        candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for snapshot in candidates:
        if snapshot.is_dir() and any(snapshot.iterdir()):
            return snapshot
    return None


def offline_variable() -> Optional[str]:
    """``NAME=value`` of the first environment variable that switches downloads off, or None."""
    for name in OFFLINE_VARIABLES:
        value = os.environ.get(name, "")
        if value.strip().lower() in _TRUE:
            return f"{name}={value}"
    return None


def hub_reachable(repo_id: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One HEAD request to the hub's API for ``repo_id``; True when any HTTP answer comes back.

    Runs in a daemon thread joined with ``timeout``, so a slow DNS lookup or a black-holed
    connection cannot hold the caller longer than ``timeout``. No retries.
    """
    url = f"{hub_endpoint()}/api/models/{repo_id}"
    if not url.startswith(("http://", "https://")):
        return False
    answered: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(url, method="HEAD")  # noqa: S310 (scheme checked above)
        try:
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
                answered.append(True)
        except urllib.error.HTTPError:  # 401/404/...: the hub is there
            answered.append(True)
        except (OSError, ValueError):
            answered.append(False)

    thread = threading.Thread(target=probe, name="studio-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered) and answered[0]


def _licence_steps(repo_id: str) -> str:
    return (
        f"{repo_id} is gated: open {DEFAULT_ENDPOINT}/{repo_id} in a browser, log in and accept "
        "the licence, then authenticate the downloading machine with `hf auth login` "
        "(`huggingface-cli login` with older huggingface_hub) or set HF_TOKEN to an access "
        "token with read access."
    )


def _is_gated_owner(repo_id: str) -> bool:
    return repo_id.split("/", 1)[0] in GATED_OWNERS


def _fetch_advice(repo_id: str, config_key: str) -> str:
    advice = (
        f"To get it, run `studio models pull {repo_id}` on a machine with network access (then "
        f"copy its cache folder {repo_folder(repo_id).name} into {hub_cache_dir()} here, or point "
        "HF_HUB_CACHE at a copy), or put the model in a local folder and pass that folder's path, "
        f"e.g. `{config_key}=/path/to/{repo_id.rsplit('/', 1)[-1]}`."
    )
    if _is_gated_owner(repo_id):
        advice += " Before pulling: " + _licence_steps(repo_id)
    return advice


def _missing_subfolders(folder: Path, subfolders: Sequence[str]) -> list[str]:
    return [s for s in subfolders if not (folder / s).is_dir() or not any((folder / s).iterdir())]


def _check_subfolders(value: Optional[Sequence[str]]) -> Optional[list[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    folders = [s.strip("/") for s in value]
    for folder in folders:
        if not folder or folder.startswith((".", "~")) or ".." in folder.split("/"):
            raise ModelNotAvailableError(
                f"Subfolder {folder!r} is not a relative folder inside a model (like 'unet' or "
                "'text_encoder'); pass folder names relative to the model's root."
            )
    return folders


def resolve_model(
    name_or_path: str,
    *,
    subfolders: Optional[Sequence[str]] = None,
    allow_download: bool = True,
    config_key: str = DEFAULT_CONFIG_KEY,
) -> Path:
    """A local folder holding the model ``name_or_path`` (a folder path, a name or a hub id).

    Precedence: an existing local folder, then a model registered by a plugin under that name,
    then the hub (cache first, then a download).

    ``subfolders`` (e.g. ``["unet", "vae"]``) must all exist in the returned folder; a download
    fetches only them plus the top-level ``*.json`` files. ``config_key`` names the setting the
    value came from, for the error messages. Raises :class:`ModelNotAvailableError`.
    """
    return _resolve(name_or_path, _check_subfolders(subfolders), allow_download, False, config_key)


def pull_model(
    name: str, *, subfolders: Optional[Sequence[str]] = None, config_key: str = DEFAULT_CONFIG_KEY
) -> Path:
    """Like :func:`resolve_model`, but a cached hub model is brought up to date when online.

    The download is incremental (files already in the cache are not fetched again). Offline,
    a complete cached copy is returned as is; a missing one raises. A local folder or a
    registered embedded model is returned as :func:`resolve_model` returns it (nothing to pull).
    """
    return _resolve(name, _check_subfolders(subfolders), True, True, config_key)


def _resolve(
    name: str,
    subfolders: Optional[list[str]],
    allow_download: bool,
    refresh: bool,
    config_key: str,
) -> Path:

    local = Path(name).expanduser()
    if local.is_dir():
        missing = _missing_subfolders(local, subfolders or [])
        if missing:
            raise ModelNotAvailableError(
                f"The model folder {local} has no (or empty) {', '.join(missing)} subfolder(s), "
                f"which this component loads. Pass the root folder of a complete model (the one "
                f"holding {', '.join(missing)}) as {config_key}."
            )
        return local
    embedded = locate(name, config_key)
    if embedded is not None:
        missing = _missing_subfolders(embedded.path, subfolders or [])
        if missing:
            raise ModelNotAvailableError(
                f"The embedded model {name!r} from {provider(embedded.registration)} (folder "
                f"{embedded.path}) has no (or empty) {', '.join(missing)} subfolder(s), which this "
                f"component loads, so it does not fit this component. Pass a model that has them "
                f"(a registered one listed by `studio models list`, a hub id or the root folder "
                f"of a complete model) as {config_key}."
            )
        return embedded.path
    if local.exists():
        raise ModelNotAvailableError(
            f"{config_key}={name!r} is a file; it must be a model folder (like a diffusers "
            "pipeline saved with save_pretrained) or a hub id like owner/name."
        )
    if not is_hub_id(name):
        raise ModelNotAvailableError(
            f"{config_key}={name!r}: no folder {local.absolute()} exists, and the value is not a "
            "Hugging Face model id (owner/name) or a registered model name either. Fix the path, "
            "or give a hub id such as runwayml/stable-diffusion-v1-5 or a model name listed by "
            f"`studio models list`.{_registered_hint(name)}"
        )
    return _from_hub(name, subfolders, allow_download, refresh, config_key)


def _from_hub(
    repo_id: str,
    subfolders: Optional[list[str]],
    allow_download: bool,
    refresh: bool,
    config_key: str,
) -> Path:
    cache = hub_cache_dir()
    storage = repo_folder(repo_id, cache)
    snapshot = cached_snapshot(repo_id, cache)
    missing = _missing_subfolders(snapshot, subfolders or []) if snapshot else []
    complete = snapshot is not None and not missing
    if complete and not refresh:
        return snapshot
    blocker = None
    variable = offline_variable()
    if variable:
        blocker = f"downloads are switched off by {variable}"
    elif not allow_download:
        blocker = "downloading is not allowed here"
    elif not hub_reachable(repo_id):
        blocker = (
            f"{hub_endpoint()} could not be reached (probe timeout {PROBE_TIMEOUT_S:g} s; no "
            "network, or a firewall or proxy blocks it)"
        )
    if blocker is None:
        return _download(repo_id, subfolders, cache, config_key)
    if complete:
        return snapshot
    if snapshot is None:
        found = (
            f"'{repo_id}' is neither a local folder nor in the Hugging Face cache "
            f"(searched {storage})"
        )
    else:
        found = (
            f"the cached copy of '{repo_id}' at {snapshot} lacks the subfolder(s) "
            f"{', '.join(missing)}"
        )
    raise ModelNotAvailableError(
        f"Model '{repo_id}' is not available: {found}, and {blocker}. "
        + _fetch_advice(repo_id, config_key)
        + _registered_hint(repo_id)
    )


def _registered_hint(name: str) -> str:
    """`` Did you mean the registered model 'x'?`` for a near miss of a registered name, else ``""``."""

    close = difflib.get_close_matches(name, registered_names(), n=3, cutoff=0.75)
    if not close:
        return ""
    return f" Did you mean the registered model {' or '.join(repr(c) for c in close)}?"


def _has_token() -> bool:
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    try:
        from huggingface_hub import get_token
    except ImportError:  # older huggingface_hub: let the server decide
        return True
    return get_token() is not None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _download(repo_id: str, subfolders: Optional[list[str]], cache: Path, config_key: str) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    endpoint = hub_endpoint()
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, files_metadata=True)
        sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
        files = _files_to_fetch(repo_id, sizes, subfolders)
        if getattr(info, "gated", False) and not _has_token():
            raise ModelNotAvailableError(
                f"Model '{repo_id}' cannot be downloaded without logging in. "
                + _licence_steps(repo_id)
            )
        total = sum(sizes[f] for f in files)
        _say(f"Downloading {repo_id}: {len(files)} files, {format_size(total)} into {cache}")
        path = snapshot_download(
            repo_id,
            cache_dir=str(cache),
            allow_patterns=[glob.escape(f) for f in files],
            endpoint=endpoint,
        )
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # hub, HTTP-client and OS errors all become one message
        raise ModelNotAvailableError(download_failure_message(repo_id, exc, config_key)) from exc
    return Path(path)


def _files_to_fetch(
    repo_id: str, sizes: dict[str, int], subfolders: Optional[list[str]]
) -> list[str]:
    from studio.models.files import select_files

    files = select_files(sizes, subfolders)
    present = {f.split("/", 1)[0] for f in files if "/" in f}
    absent = [s for s in subfolders or [] if s.split("/", 1)[0] not in present]
    if absent or not files:
        what = f"subfolder {', '.join(absent)}" if absent else "loadable file"
        raise ModelNotAvailableError(
            f"Model '{repo_id}' on the hub has no {what}; is it the right model (a diffusers "
            "pipeline or transformers model)? Check the id on its hub page."
        )
    return files


def download_failure_message(repo_id: str, exc: BaseException, config_key: str) -> str:
    """One paragraph explaining a failed hub access (gated, unknown repository, network)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = one_line(f"{type(exc).__name__}: {exc}")
    if (
        isinstance(exc, GatedRepoError)
        or status == 403
        or (status == 401 and _is_gated_owner(repo_id))
    ):
        return (
            f"Model '{repo_id}' refused the download (HTTP {status or 'gated'}): "
            + _licence_steps(repo_id)
            + f" Hub answer: {detail}"
        )
    if isinstance(exc, RepositoryNotFoundError) or status in (401, 404):
        return (
            f"Model '{repo_id}' does not exist on {hub_endpoint()} (or it is private and this "
            "machine is not logged in), and no local folder of that name exists. Check the "
            f"spelling, pass a local folder instead (e.g. `{config_key}=/path/to/model`), or, for "
            "a private model, log in with `hf auth login` or set HF_TOKEN."
        )
    return (
        f"Downloading model '{repo_id}' from {hub_endpoint()} failed ({detail}); the cache "
        f"({repo_folder(repo_id)}) has no complete copy. Check the network and run "
        f"`studio models pull {repo_id}` again (finished files are kept), or put the model in "
        f"a local folder and pass its path, e.g. `{config_key}=/path/to/model`."
    )


def format_size(size_bytes: int) -> str:
    """``1536`` -> ``1.5 KB`` (powers of 1024, one decimal; bytes as an integer)."""
    units = ("B", "KB", "MB", "GB", "TB")
    value, unit = float(size_bytes), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{int(size_bytes)} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def list_cached_models(cache_dir: Optional[Path] = None) -> list[CachedModel]:
    """Model repositories in the hub cache, sorted by id; a missing cache folder gives ``[]``."""
    cache = hub_cache_dir() if cache_dir is None else Path(cache_dir)
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(cache)
    models = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        path = cached_snapshot(repo.repo_id, cache) or Path(repo.repo_path)
        models.append(CachedModel(repo.repo_id, int(repo.size_on_disk), path))
    return models
