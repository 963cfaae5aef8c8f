"""Where weights come from, whether they are cached, and how to get them without hanging.

Three kinds of source:

- ``hub``: a Hugging Face repo (open_clip tags, timm tags, transformers ids). The libraries
  download and cache these themselves; raybench only decides whether they may touch the
  network. The cache is the libraries' own (``HF_HOME``), or ``$RAYBENCH_WEIGHTS/hub`` when
  RAYBENCH_WEIGHTS is set, so that one shared folder holds every weight on a cluster.
- ``url``: a file (the torchreid model zoo and CLIP-ReID releases live on Google Drive),
  fetched with gdown into ``raybench.paths.weights_dir()``.
- ``local``: a path on disk.

Network rule: a machine without egress may not fail fast: connections can hang. So a load
never starts a download blindly. Cached: the hub is switched to offline mode for the load, so
the libraries do not even ask for updates. Not cached: a connectivity probe bounded by a few
seconds runs first, and an unreachable host gives a WeightsUnavailableError that names the
model, its source and the `raybench models fetch` command, instead of a hang or a retry loop.
A host that accepts and then stalls is bounded too: URL downloads give up after
``DOWNLOAD_STALL_S`` seconds without a byte (the same error, saying it stalled).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlparse

from raybench.errors import RaybenchError, WeightsUnavailableError
from raybench.models.base import Source
from raybench.paths import weights_dir

if TYPE_CHECKING:  # pragma: no cover
    from raybench.specs import ModelSpec

PROBE_TIMEOUT_S = 3.0
#: a URL download: seconds to connect, and seconds without a byte before it counts as stalled
DOWNLOAD_CONNECT_S = 10.0
DOWNLOAD_STALL_S = 60.0
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".tar", ".ckpt", ".pkl")


# ---------------------------------------------------------------------------------------------
# Building sources


def classify(weights: str) -> str:
    """'url', 'path' (a file or folder, whether or not it exists yet) or 'name' (a library tag
    or hub id, resolved by the loader family)."""
    if weights.startswith(("http://", "https://")):
        return "url"
    if weights.startswith(("/", "./", "../", "~")) or weights.endswith(_WEIGHT_SUFFIXES) or Path(weights).exists():
        return "path"
    return "name"


def file_source(spec: "ModelSpec", family: str) -> Source | None:
    """The source of a spec whose weights are a URL or a path (None for a name or no weights)."""
    if not spec.weights:
        return None
    kind = classify(spec.weights)
    if kind == "url":
        digest = hashlib.sha256(spec.weights.encode()).hexdigest()[:12]
        stem = spec.arch.replace("/", "-")
        return Source("url", spec.weights, target=str(weights_dir() / family / f"{stem}-{digest}.pth"))
    if kind == "path":
        return Source("local", str(Path(spec.weights).expanduser()))
    return None


def hub_source(repo_or_path: str, files: tuple[str, ...], required: tuple[str, ...] = ()) -> Source:
    """A hub source; ``repo_or_path`` may name a file in the repo (``org/repo/file.bin``), as
    open_clip's pretrained table does, in which case that file is the only candidate."""
    parts = repo_or_path.strip("/").split("/")
    if len(parts) > 2:
        return Source("hub", "/".join(parts[:2]), files=("/".join(parts[2:]),), required=required)
    return Source("hub", "/".join(parts), files=files, required=required)


def hub_cache_dir() -> str | None:
    """Hub cache for the libraries: $RAYBENCH_WEIGHTS/hub when set, else their default."""
    root = os.environ.get("RAYBENCH_WEIGHTS")
    return str(Path(root) / "hub") if root else None


# ---------------------------------------------------------------------------------------------
# Cache status (no torch)


def is_cached(source: Source) -> bool:
    if source.kind == "local":
        return Path(source.location).exists()
    if source.kind == "url":
        return Path(source.target).is_file()
    return _hub_file(source) is not None


def _hub_file(source: Source) -> str | None:
    """The cached weights file of a hub source, or None when any needed file is missing."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> str | None:
        path = try_to_load_from_cache(source.location, filename, cache_dir=hub_cache_dir())
        return path if isinstance(path, str) else None

    if not all(cached(f) for f in source.required):
        return None
    return next((p for p in map(cached, source.files) if p), None)


def cached_status(spec: "ModelSpec") -> bool | None:
    """True/False for the listing; None when the model needs no weights or the source is
    unknown without importing its library."""
    from raybench.models import get_loader

    source = get_loader(spec.loader).source(spec)
    return None if source is None else is_cached(source)


# ---------------------------------------------------------------------------------------------
# Bounded network access


def reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Can a TCP connection to host:port open within ``timeout`` seconds?

    Runs in a daemon thread so that a hanging DNS lookup is bounded too. With HTTPS_PROXY set,
    the proxy is what must be reachable.
    """
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 80
    ok: list[bool] = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(ok)


def _host_port(source: Source) -> tuple[str, int]:
    if source.kind == "url":
        parsed = urlparse(source.location)
    else:
        parsed = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return parsed.hostname or "", parsed.port or (80 if parsed.scheme == "http" else 443)


def unavailable(spec: "ModelSpec", source: Source, why: str) -> WeightsUnavailableError:
    where = os.environ.get("RAYBENCH_WEIGHTS")
    store = f"RAYBENCH_WEIGHTS={where}" if where else "RAYBENCH_WEIGHTS pointing at shared storage"
    return WeightsUnavailableError(
        f"model {spec.name!r}: {why} (source: {source}). On a machine with internet access run "
        f"`raybench models fetch {spec.name}` (with {store}), then run again here."
    )


def require_network(spec: "ModelSpec", source: Source) -> None:
    host, port = _host_port(source)
    if not reachable(host, port):
        raise unavailable(spec, source, f"weights are not cached and {host} cannot be reached")


@contextmanager
def hub_access(spec: "ModelSpec", source: Source | None) -> Iterator[None]:
    """Around a library's own download (from the hub, or a URL it caches itself, as timm's few
    URL tags): offline when cached, probed when not.

    Offline mode is huggingface_hub's module flag (read at import, so the environment variable
    alone would be too late); it is set for this block only and restored afterwards.
    """
    if source is None or source.kind == "local":
        yield
        return
    if is_cached(source):
        with _hub_offline() if source.kind == "hub" else nullcontext():
            yield
        return
    require_network(spec, source)
    try:
        yield
    except OSError as exc:  # huggingface_hub's errors are OSErrors
        raise unavailable(spec, source, f"download failed: {_first_line(exc)}") from exc
    except RuntimeError as exc:  # open_clip wraps download errors in a RuntimeError
        if "download" not in str(exc).lower():
            raise
        raise unavailable(spec, source, f"download failed: {_first_line(exc)}") from exc


@contextmanager
def _hub_offline() -> Iterator[None]:
    from huggingface_hub import constants

    saved_flag, saved_env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_flag
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def local_file(spec: "ModelSpec", source: Source) -> Path:
    """The weights file of a url or local source, downloading a url once (bounded)."""
    if source.kind == "local":
        path = Path(source.location)
        if not path.exists():
            raise WeightsUnavailableError(f"model {spec.name!r}: weights file {path} does not exist")
        return path
    target = Path(source.target)
    if not target.is_file():
        require_network(spec, source)
        _download_url(spec, source, target)
    return target


def _download_url(spec: "ModelSpec", source: Source, target: Path) -> None:
    """gdown (Google Drive aware) into a temporary name, then an atomic rename, so that two
    actors downloading at once never read a half-written file."""
    import gdown

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        result = _bounded_gdown(gdown, source.location, str(partial))
    except Exception as exc:  # gdown raises many types (requests, its own FileURLRetrievalError)
        _remove_partials(partial)
        why = (f"download stalled: nothing received for {DOWNLOAD_STALL_S:g} s" if _timed_out(exc)
               else f"download failed: {_first_line(exc)}")
        raise unavailable(spec, source, why) from None
    if not result or not partial.is_file():
        _remove_partials(partial)
        raise unavailable(spec, source, "download failed")
    os.replace(partial, target)


def _remove_partials(partial: Path) -> None:
    """The partial file and gdown's own temporary next to it (``<output><random>.part``)."""
    for path in partial.parent.glob(f"{partial.name}*"):
        path.unlink(missing_ok=True)


def _bounded_gdown(gdown, url: str, output: str):
    """gdown.download with every connect and read bounded: its own ``timeout`` (requests'
    (connect, read) pair) where this gdown has one, else a socket default timeout for the call.
    Older gdown needs ``fuzzy`` for Drive's ``file/d/<id>/view`` links; gdown 6 parses them
    itself and rejects the keyword."""
    import inspect

    params = inspect.signature(gdown.download).parameters
    kwargs = {"quiet": True, **({"fuzzy": True} if "fuzzy" in params else {})}
    if "timeout" in params:
        return gdown.download(url, output, timeout=(DOWNLOAD_CONNECT_S, DOWNLOAD_STALL_S), **kwargs)
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_STALL_S)
    try:
        return gdown.download(url, output, **kwargs)
    finally:
        socket.setdefaulttimeout(saved)


def _timed_out(exc: BaseException | None) -> bool:
    """Whether a (wrapped) download error is a timeout: requests wraps urllib3's read timeout
    in a ConnectionError, and gdown may wrap that again."""
    while exc is not None:
        if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower() or "Timeout" in type(exc).__name__:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def fetch(spec: "ModelSpec") -> str:
    """Download a model's weights into the cache (`raybench models fetch`); returns where."""
    from raybench.models import get_loader

    source = get_loader(spec.loader).find_source(spec)
    if source is None:
        return "no weights to fetch"
    if source.kind in ("local", "url"):
        return str(local_file(spec, source))
    cached = _hub_file(source)
    if cached:
        return cached
    require_network(spec, source)
    return _download_hub(spec, source)


def _download_hub(spec: "ModelSpec", source: Source) -> str:
    from huggingface_hub import HfApi, snapshot_download

    try:
        present = set(HfApi().list_repo_files(source.location))
        weights = next((f for f in source.files if f in present), None)
        if weights is None:
            raise unavailable(spec, source, f"none of {', '.join(source.files)} is in the repo")
        patterns = [weights, *source.required]
        if weights.endswith(".index.json"):
            patterns.append(weights.replace(".index.json", "").replace("model.", "model-*."))
        folder = snapshot_download(source.location, allow_patterns=patterns, cache_dir=hub_cache_dir())
    except RaybenchError:
        raise
    except Exception as exc:  # hub errors come in many types; the message is what matters
        raise unavailable(spec, source, f"download failed: {exc}") from None
    return str(Path(folder) / weights)


# ---------------------------------------------------------------------------------------------
# Reading checkpoints


def load_state_dict(path: str | Path) -> dict:
    """A checkpoint's state dict, read safely: safetensors, or torch.load(weights_only=True).

    Accepts a plain state dict or the usual wrappers ({'state_dict': ...}, {'model': ...}) and
    strips DataParallel's 'module.' prefix.
    """
    import pickle

    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise unsafe_checkpoint(path, exc) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def unsafe_checkpoint(path: str | Path, exc: BaseException) -> WeightsUnavailableError:
    """The error for a file that torch.load(weights_only=True) refuses or cannot read."""
    return WeightsUnavailableError(
        f"{path}: not a checkpoint that loads with torch.load(weights_only=True) ({_first_line(exc)}); "
        "re-save its state_dict with torch.save, or convert it to safetensors")


def check_state_dict(own: dict, state: dict, spec: "ModelSpec", what: str) -> None:
    """Every key of ``own`` in ``state`` with the same shape, and nothing else; else one clear
    error (counts and a first example) instead of load_state_dict's wall of keys."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise WeightsUnavailableError(
            f"model {spec.name!r}: checkpoint does not fit {what} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped keys, e.g. {first!r})"
        )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
