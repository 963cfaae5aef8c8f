"""Weights: caches, safe checkpoint loading, and the offline path (a clear error in seconds,
never a hang, a retry loop or a traceback)."""

import contextlib
import dataclasses
import os
import pickle
import socket
import subprocess
import sys
import threading

import pytest
import torch

from raybench.catalog import load_model_catalog
from raybench.errors import WeightsUnavailableError
from raybench.models import build_embedder, get_loader, weights

CATALOG = load_model_catalog()


@pytest.fixture
def offline(monkeypatch):
    """No host is reachable (what this machine is; patched so that CI with egress behaves alike)."""
    calls = []
    monkeypatch.setattr(weights, "reachable", lambda host, port=443, timeout=0: calls.append(host) or False)
    return calls


@pytest.fixture
def weights_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYBENCH_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path / "weights"


@pytest.mark.parametrize("name, host", [
    ("clip-vit-b32", "huggingface.co"),
    ("dinov2-b14", "huggingface.co"),
    ("dinov2-b14-hf", "huggingface.co"),
    ("osnet-x1_0-market", "drive.google.com"),
    ("clipreid-vit-b16-msmt17", "drive.google.com"),
])
def test_offline_without_cache_is_a_clear_error_after_one_probe(offline, weights_dir, name, host):
    """Offline, building a model is the clear weights error after exactly one bounded probe
    (``reachable``: counted here, bounded by its own test), never a download that retries."""
    with pytest.raises(WeightsUnavailableError) as info:
        build_embedder(CATALOG[name], device="cpu")
    message = str(info.value)
    assert f"model {name!r}" in message and host in message
    assert f"raybench models fetch {name}" in message and "RAYBENCH_WEIGHTS" in message
    assert offline == [host]  # one probe, no retries


def test_probe_is_bounded_even_when_the_connection_hangs(monkeypatch):
    """A DNS lookup or connect that hangs (no egress, no refusal) costs the timeout, no more: the
    probe runs in a daemon thread that it waits for at most timeout + 0.5 s, then answers False
    (the thread is injected: it records that bound and never finishes, as a hung lookup)."""
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    waits = []

    class Hung:
        def __init__(self, target, daemon):
            assert daemon  # a hung lookup must not keep the process alive
            self.target = target

        def start(self):
            pass  # the attempt never completes

        def join(self, timeout=None):
            waits.append(timeout)

    monkeypatch.setattr(weights.threading, "Thread", Hung)
    assert weights.reachable("huggingface.co", 443, timeout=0.5) is False
    assert waits == [1.0]


def test_probe_goes_through_the_https_proxy(monkeypatch):
    seen = []
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(weights.socket, "create_connection", lambda address, timeout: seen.append(address) or _Closable())
    assert weights.reachable("huggingface.co") is True and seen == [("proxy.example", 3128)]


class _Closable:
    def close(self):
        pass


@contextlib.contextmanager
def stalling_server(reply: bytes):
    """An HTTP server on 127.0.0.1 that accepts, reads the request, sends ``reply`` and then
    says nothing more (a host that connects but never delivers the file)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done, held = threading.Event(), []

    def serve():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
                if conn.recv(65536):  # the reachability probe connects and closes: no request
                    conn.sendall(reply)
            except OSError:  # accept's timeout, or a probe gone
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("reply", [
    b"",  # connected, no response at all
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100,
], ids=["no-response", "stalled-body"])
def test_a_download_that_stalls_is_a_clear_error_in_seconds(monkeypatch, weights_dir, reply):
    """The probe passes (the host accepts), then the transfer stalls: bounded by the read timeout."""
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(weights, "DOWNLOAD_STALL_S", 1.0)
    with stalling_server(reply) as port:
        url = f"http://127.0.0.1:{port}/osnet_x0_25.pth"
        spec = dataclasses.replace(CATALOG["osnet-x0_25-market"], weights=url)
        with pytest.raises(WeightsUnavailableError) as info:
            weights.fetch(spec)
    message = str(info.value)
    # "stalled" is the read timeout (DOWNLOAD_STALL_S) firing: the transfer was cut, not waited out
    assert "model 'osnet-x0_25-market'" in message and url in message and "stalled" in message
    assert "nothing received for 1 s" in message and "raybench models fetch osnet-x0_25-market" in message
    assert not list((weights_dir / "torchreid").iterdir())  # no partial file left behind


def fake_hub_cache(root, repo, filename):
    """The layout huggingface_hub's cache uses: refs/main -> snapshots/<commit>/<file>."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(b"weights")
    return snapshot / filename


def test_cached_hub_weights_load_with_the_hub_offline(monkeypatch, weights_dir):
    from huggingface_hub import constants

    spec = CATALOG["dinov2-b14"]
    source = get_loader("timm").source(spec)
    assert source.location == "timm/vit_base_patch14_dinov2.lvd142m"
    fake_hub_cache(weights_dir / "hub", source.location, "model.safetensors")
    monkeypatch.setattr(weights, "reachable", lambda *a, **k: pytest.fail("cached weights must not probe"))
    assert weights.cached_status(spec) is True
    before = constants.HF_HUB_OFFLINE
    with weights.hub_access(spec, source):
        assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE == before


def test_zoo_weights_come_from_the_weights_dir_without_network(monkeypatch, weights_dir):
    import torchreid

    spec = CATALOG["osnet-x0_25-market"]
    source = get_loader("torchreid").source(spec)
    assert source.kind == "url" and source.target.startswith(str(weights_dir / "torchreid" / "osnet_x0_25-"))
    assert weights.cached_status(spec) is False
    model = torchreid.models.build_model("osnet_x0_25", num_classes=751, pretrained=False)
    os.makedirs(os.path.dirname(source.target))
    torch.save(model.state_dict(), source.target)
    monkeypatch.setattr(weights, "reachable", lambda *a, **k: pytest.fail("cached weights must not probe"))
    assert weights.cached_status(spec) is True
    embedder = build_embedder(spec, device="cpu")
    assert torch.equal(embedder.tower.conv1.conv.weight, model.conv1.conv.weight)
    assert weights.fetch(spec) == source.target  # `raybench models fetch`: already there
    assert weights.fetch(CATALOG["color-hist"]) == "no weights to fetch"


def test_cache_status_is_unknown_only_when_the_library_would_be_needed():
    spec = CATALOG["clip-vit-b32"]
    assert weights.cached_status(spec) is False
    no_hub = dataclasses.replace(spec, options={})
    assert weights.cached_status(no_hub) is None  # listing never imports open_clip to find out
    assert get_loader("openclip").find_source(no_hub) == get_loader("openclip").source(spec)


def test_a_missing_local_file_is_named(tmp_path):
    from raybench.models import check_model

    spec = dataclasses.replace(CATALOG["osnet-x0_25-market"], weights=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsUnavailableError, match="nope.pth does not exist"):
        build_embedder(spec, device="cpu")
    with pytest.raises(WeightsUnavailableError, match="nope.pth does not exist"):  # without building
        check_model(spec)
    check_model(spec, local_files=False)  # where the caller may not see the actors' files
    check_model(CATALOG["osnet-x0_25-market"])  # a zoo URL: nothing to check without the network


class NotAWeight:
    pass


def test_checkpoints_load_safely(tmp_path):
    from safetensors.torch import save_file

    tensor = torch.ones(2)
    torch.save({"a": tensor}, tmp_path / "plain.pth")
    torch.save({"state_dict": {"module.a": tensor}, "epoch": 60}, tmp_path / "wrapped.pth.tar")
    pickle_protocol = 2  # torch.save's own; the unsafe file below is a plain pickle
    save_file({"a": tensor}, str(tmp_path / "w.safetensors"))
    for name in ("plain.pth", "wrapped.pth.tar", "w.safetensors"):
        assert torch.equal(weights.load_state_dict(tmp_path / name)["a"], tensor)
    with open(tmp_path / "unsafe.pth", "wb") as handle:
        pickle.dump({"a": NotAWeight()}, handle, protocol=pickle_protocol)
    with pytest.raises(WeightsUnavailableError, match="weights_only=True"):
        weights.load_state_dict(tmp_path / "unsafe.pth")



def test_an_unsafe_open_clip_checkpoint_is_a_clear_error(tmp_path):
    """open_clip reads a local file with torch.load(weights_only=True) itself; a pickled object
    is raybench's one-line weights error, not open_clip's UnpicklingError."""
    from raybench.specs import parse_model

    with open(tmp_path / "clip.pth", "wb") as handle:
        pickle.dump({"a": NotAWeight()}, handle, protocol=2)
    spec = parse_model({"name": "my-clip", "loader": "openclip", "arch": "raybench-tiny-ViT",
                        "weights": str(tmp_path / "clip.pth"), "paradigm": "language-aligned"}, "test")
    with pytest.raises(WeightsUnavailableError, match=r"clip.pth: not a checkpoint that loads with torch.load\(weights_only=True\)"):
        build_embedder(spec, device="cpu")

def run_cli(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy", "all_proxy")}
    return subprocess.run([sys.executable, "-m", "raybench", *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)


def test_fetch_offline_cli_is_one_line(tmp_path):
    """A closed local port stands in for the hub: the probe fails at once, whatever the CI's egress."""
    result = run_cli("models", "fetch", "clip-vit-b32", HF_ENDPOINT="http://127.0.0.1:9",
                     RAYBENCH_WEIGHTS=str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "raybench models fetch clip-vit-b32" in result.stderr and "127.0.0.1 cannot be reached" in result.stderr
    unknown = run_cli("models", "fetch", "clip-vit-b23")
    assert unknown.returncode == 2 and "Did you mean 'clip-vit-b32'" in unknown.stderr


def test_local_checkpoints_for_timm_and_open_clip(tmp_path):
    """A local file goes through the library's own loading (timm's pretrained_cfg file,
    open_clip's pretrained path), then raybench's input-size change."""
    import open_clip
    import timm
    from safetensors.torch import save_file

    from raybench.models import tiny_spec
    from raybench.models.openclip import register_tiny_configs

    spec = tiny_spec(CATALOG["dinov2-b14"])
    model = timm.create_model(spec.arch, num_classes=0, **spec.options["model_kwargs"])
    save_file(model.state_dict(), str(tmp_path / "dinov2.safetensors"))
    embedder = build_embedder(dataclasses.replace(spec, weights=str(tmp_path / "dinov2.safetensors")), device="cpu")
    model.set_input_size(img_size=spec.preprocess.size)
    assert all(torch.equal(a, b) for a, b in zip(embedder.tower.state_dict().values(), model.state_dict().values()))

    register_tiny_configs()  # open_clip's own create_model, for the reference checkpoint
    clip = open_clip.create_model("raybench-tiny-ViT")
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    spec = dataclasses.replace(tiny_spec(CATALOG["clip-vit-b16"]), weights=str(tmp_path / "clip.pt"),
                               preprocess=dataclasses.replace(CATALOG["clip-vit-b16"].preprocess, size=(32, 32)))
    embedder = build_embedder(spec, device="cpu")
    assert torch.equal(embedder.tower.proj, clip.visual.proj)


def test_a_timm_tag_kept_at_a_url_is_probed_and_fetched_from_that_url(offline, weights_dir):
    """A few timm tags (I-JEPA, legacy SE-ResNets, GC ViT) have no hub repo: timm downloads a
    URL itself. Offline that is the same clear error (probing the URL's host, not the hub), and
    `raybench models fetch` fetches that URL into the file timm's own download looks for."""
    from raybench.specs import ModelSpec

    spec = ModelSpec(name="seresnet18", loader="timm", arch="legacy_seresnet18", weights="in1k",
                     paradigm="supervised")
    source = get_loader("timm").find_source(spec)
    assert source.kind == "url" and source.location.startswith("https://github.com/")
    assert source.target == str(weights_dir / "hub" / "seresnet18-4bb0ce65.pth")
    for attempt in (lambda: build_embedder(spec, device="cpu"), lambda: weights.fetch(spec)):
        with pytest.raises(WeightsUnavailableError) as info:
            attempt()
        message = str(info.value)
        assert "model 'seresnet18'" in message and "github.com" in message
        assert "raybench models fetch seresnet18" in message
    assert offline == ["github.com", "github.com"]  # one probe each, no retries
