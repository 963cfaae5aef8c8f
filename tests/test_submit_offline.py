"""raybench submit/status/logs/stop without a cluster: tokens, headers, entry points, and
addresses that must fail fast (a dead port, a server that never answers, one that is not Ray)."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import warnings

import pytest

from raybench.errors import RaybenchError, SpecError
from raybench.paths import PROJECT_ROOT
from raybench.jobs import dashboard as dashboard_mod
from raybench.jobs import submit as jobs
from raybench.jobs.dashboard import ClusterAuthError, ClusterError, dashboard, find_token, parse_headers

SECRET = "s3cr3t-t0ken-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args, env=None, timeout=60):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "raybench", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


# --- tokens and headers -----------------------------------------------------------------------


@pytest.fixture
def home(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(" home-token\n")
    (tmp_path / "tokfile").write_text("path-token\n")
    return tmp_path


TOKEN_CASES = [
    ({}, "home-token"),
    ({"RAY_AUTH_TOKEN": "env-token"}, "env-token"),
    ({"RAY_AUTH_TOKEN": ""}, "home-token"),
    ({"RAY_AUTH_TOKEN_PATH": "{home}/tokfile"}, "path-token"),
    ({"RAY_AUTH_TOKEN": "env-token", "RAY_AUTH_TOKEN_PATH": "{home}/tokfile"}, "env-token"),
]


# Ray's own loader, asked once per case in one clean process (its cache reset in between).
RAY_LOADER = """
import json, os, sys
from ray._raylet import AuthenticationTokenLoader as L
out = []
for env in json.loads(sys.argv[1]):
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        os.environ.pop(k, None)
    os.environ.update(env)
    L.instance().reset_cache()
    out.append(L.instance().get_raw_token(ignore_auth_mode=True))
print(json.dumps(out))
"""


def test_token_is_found_where_and_in_the_order_ray_looks(home):
    """Same answers as Ray's own AuthenticationTokenLoader."""
    import json

    cases = [({k: v.format(home=home) for k, v in env.items()}, expected) for env, expected in TOKEN_CASES]
    for env, expected in cases:
        found = find_token(env, home=home)
        assert found and found[0] == expected, env
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    ray_says = subprocess.run([sys.executable, "-c", RAY_LOADER, json.dumps([env for env, _ in cases])],
                              env={**clean, "HOME": str(home)}, capture_output=True, text=True, check=True)
    assert json.loads(ray_says.stdout) == [expected for _, expected in cases]


def test_no_token_when_auth_is_disabled_or_absent(home, tmp_path_factory):
    assert find_token({"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "x"}, home=home) is None
    assert find_token({}, home=tmp_path_factory.mktemp("empty-home")) is None


def test_unreadable_token_path_is_an_error_like_in_ray(home):
    with pytest.raises(ClusterAuthError, match="RAY_AUTH_TOKEN_PATH"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(home / "missing")}, home=home)


def test_headers_from_values_and_files(tmp_path):
    (tmp_path / "cookie").write_text("session=abc\n")
    assert parse_headers(["X-A=1", "Cookie=@" + str(tmp_path / "cookie"), "X-B=a=b"]) == {
        "X-A": "1", "Cookie": "session=abc", "X-B": "a=b"}
    with pytest.raises(ClusterError, match="NAME=VALUE"):
        parse_headers(["novalue"])


def test_token_is_sent_but_never_shown(home):
    dash = dashboard("127.0.0.1:8265", environ={"RAY_AUTH_TOKEN": SECRET})
    assert dash.address == "http://127.0.0.1:8265"
    assert dash.headers["Authorization"] == f"Bearer {SECRET}"
    assert dash.token_source == "$RAY_AUTH_TOKEN"
    assert SECRET not in repr(dash) and SECRET not in dashboard_mod.auth_message(dash, True)


def test_an_authorization_header_wins_over_the_token():
    dash = dashboard("http://h:8265", ["authorization=Basic xyz"], environ={"RAY_AUTH_TOKEN": SECRET})
    assert dash.headers == {"authorization": "Basic xyz"}
    assert dash.token_source == "--header Authorization"


def test_addresses():
    assert dashboard("https://h:443/", environ={}).address == "https://h:443"
    assert dashboard_mod.redact_url("https://u:pw@h:1") == "https://u:***@h:1"
    with pytest.raises(ClusterError, match="8265"):
        dashboard("ray://head:10001", environ={})


# --- what a submission sends ------------------------------------------------------------------


def test_every_job_spec_loads():
    for path in sorted(jobs.JOBS_DIR.glob("*.yaml")):
        spec = jobs.load_job_spec(path.stem)
        assert spec.runtime_env["working_dir"] == "."


def test_submission_quotes_appends_and_merges(tmp_path):
    spec = jobs.load_job_spec("matrix")
    sub = jobs.build_submission(spec, "my matrix", "My Run", out="s3://b/runs x",
                                extra_args=["--models", "a,b"],
                                runtime_env={"env_vars": {"X": "1"}, "excludes": ["big/"]})
    assert sub.entrypoint == "python -m raybench run --matrix 'my matrix' --out 's3://b/runs x' --models a,b"
    assert sub.runtime_env["working_dir"] == str(PROJECT_ROOT)
    assert sub.runtime_env["env_vars"]["X"] == "1" and "PYTHONUNBUFFERED" in sub.runtime_env["env_vars"]
    assert ".venv/" in sub.runtime_env["excludes"] and "big/" in sub.runtime_env["excludes"]
    assert sub.submission_id.startswith("raybench-my-run-")
    assert sub.resources == {"entrypoint_num_cpus": 0, "entrypoint_num_gpus": 0}


def test_matrices_are_checked_here_and_sent_by_name_or_project_path(tmp_path):
    assert jobs.matrix_target("smoke") == ("smoke", "smoke")
    path = PROJECT_ROOT / "configs" / "matrices" / "smoke.yaml"
    assert jobs.matrix_target(str(path)) == ("configs/matrices/smoke.yaml", "smoke")
    outside = tmp_path / "mine.yaml"
    outside.write_text(path.read_text())
    with pytest.raises(SpecError, match="outside the project"):
        jobs.matrix_target(str(outside))
    with pytest.raises(RaybenchError, match="smoke"):  # a typo is caught before anything is uploaded
        jobs.matrix_target("smoek")


def test_training_configs_are_sent_as_project_paths():
    config = PROJECT_ROOT / "configs" / "train" / "osnet_smoke.yaml"
    target, name = jobs.train_target("osnet_smoke")
    # the run is named by the config's name: key, as `raybench train` names its run folder
    assert (target, name) == ("configs/train/osnet_smoke.yaml", "osnet-x0_25-synth-a-smoke")
    assert f"name: {name}" in config.read_text()
    sub = jobs.build_submission(jobs.load_job_spec("train"), target, name, out="/shared/train")
    assert sub.entrypoint == f"python -m raybench train {target} --out /shared/train"


def test_out_must_mean_the_same_on_the_cluster(tmp_path):
    assert jobs.check_out("gs://b/x") == "gs://b/x"
    assert jobs.check_out(str(tmp_path)) == str(tmp_path)
    with pytest.raises(SpecError, match="relative"):
        jobs.check_out("runs/x")


def test_a_training_run_is_refused_a_uri_before_anything_is_sent(capsys):
    """`raybench train` writes plain files and refuses a URI on the cluster: refused here, before
    the upload (the address is a closed port, so reaching it would be another error)."""
    assert jobs.check_out("/mnt/raybench/train", uri_ok=False) == "/mnt/raybench/train"
    code, _, err, _ = invoke(capsys, "submit", "--train", "osnet_smoke", "--out", "s3://bucket/train",
                             "--address", f"http://127.0.0.1:{free_port()}")
    assert code == 2, err
    assert "--out s3://bucket/train: a training run needs a folder, not a URI" in err
    assert "every node mounts" in err and "cannot reach" not in err


def test_files_outside_the_project_are_refused(tmp_path):
    assert jobs.project_relative(PROJECT_ROOT / "jobs" / "matrix.yaml", "matrix") == "jobs/matrix.yaml"
    with pytest.raises(SpecError, match="outside the project"):
        jobs.project_relative(tmp_path / "m.yaml", "matrix")


def test_submit_needs_exactly_one_target():
    result = run_cli("submit", "--address", "http://127.0.0.1:1")
    assert result.returncode == 2 and "exactly one of --matrix" in result.stderr


# --- addresses that must fail fast ------------------------------------------------------------


def invoke(capsys, *argv):
    """raybench's main() in this process (no interpreter start-up in the timing):
    (exit code, stdout, stderr, seconds)."""
    from raybench.cli import main

    start = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err, time.monotonic() - start


def _fails_fast(result, expected):
    code, _, err, seconds = result
    assert code == 2, err
    assert seconds < 10, f"took {seconds:.1f}s"
    assert expected in err and "Traceback" not in err
    assert err.count("\n") <= 1, err


def test_dead_address_fails_within_seconds(capsys):
    result = invoke(capsys, "status", "--address", f"http://127.0.0.1:{free_port()}")
    _fails_fast(result, "cannot reach the Ray dashboard")


def test_dead_address_fails_from_the_shell_too():
    """A real submission (a matrix that exists) to a closed port: refused at connect, in seconds,
    interpreter start-up included."""
    start = time.monotonic()
    result = run_cli("submit", "--matrix", "smoke", "--address", f"http://127.0.0.1:{free_port()}")
    seconds = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    assert seconds < 10, f"took {seconds:.1f}s"
    assert "cannot reach the Ray dashboard" in result.stderr and "Traceback" not in result.stderr


def test_silent_server_times_out(capsys):
    """Accepts connections (kernel backlog) but never answers: the read timeout ends it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        result = invoke(capsys, "logs", "raysubmit_x", "--address", f"http://127.0.0.1:{s.getsockname()[1]}",
                        "--timeout", "2")
    _fails_fast(result, "did not answer within 2 s")


class _NotRay(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<html>hello</html>")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _not_ray_server():
    """A local web server that answers every request with a plain page; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_ray_is_named_as_such(capsys):
    with _not_ray_server() as port:
        result = invoke(capsys, "status", "--address", f"http://127.0.0.1:{port}")
    _fails_fast(result, "not as a Ray Jobs API")


# --- TLS: a dashboard behind an HTTPS proxy with its own CA ------------------------------------


def _self_signed(folder):
    """(cert.pem, key.pem) for 127.0.0.1, self-signed: with `cryptography` where installed, else
    the openssl command; None when neither is available."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        import shutil

        if shutil.which("openssl") is None:
            return None
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(private.public_key())
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(ski, False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


class _JobsApi(http.server.BaseHTTPRequestHandler):
    """Just enough of the Jobs API for `raybench status`: the version check and an empty list."""

    def do_GET(self):  # noqa: N802
        body = {"/api/version": b'{"version": "4", "ray_version": "2.60.0", "ray_commit": "x"}',
                "/api/jobs/": b"[]"}.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def https_dashboard(tmp_path_factory):
    import ssl

    pair = _self_signed(tmp_path_factory.mktemp("tls"))
    if pair is None:
        pytest.skip("neither the cryptography package nor the openssl command to make a certificate")
    cert, key = pair
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JobsApi)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def test_tls_certificate_is_verified_with_the_ca_bundle_or_not_at_all(https_dashboard, capsys):
    address, cert = https_dashboard
    result = invoke(capsys, "status", "--address", address)
    _fails_fast(result, f"TLS verification failed for the Ray dashboard at {address}")
    assert "self-signed certificate" in result[2] and "--ca-bundle FILE" in result[2]
    code, out, err, _ = invoke(capsys, "status", "--address", address, "--ca-bundle", str(cert))
    assert code == 0, err
    assert f"jobs on {address}" in out + err
    with warnings.catch_warnings():  # urllib3's per-connection warning is replaced by one line
        warnings.simplefilter("error")
        code, out, err, _ = invoke(capsys, "status", "--address", address, "--no-verify")
    assert code == 0, err
    assert f"jobs on {address}" in out + err
    assert err.count("not checked") == 1 and "Unverified HTTPS" not in err


def test_https_to_a_plain_http_port_is_named(capsys):
    with _not_ray_server() as port:
        result = invoke(capsys, "status", "--address", f"https://127.0.0.1:{port}")
    _fails_fast(result, "TLS handshake with the Ray dashboard at https://127.0.0.1:")
    assert "check that this port serves https" in result[2]


def test_the_log_tail_verifies_tls_the_same_way(https_dashboard):
    """The websocket tail (aiohttp) gets its own SSL context from the same options."""
    import ssl

    address, cert = https_dashboard
    port = int(address.rsplit(":", 1)[1])

    def handshake(context):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass

    assert jobs._ssl_context(dashboard(address, environ={})) is True
    assert jobs._ssl_context(dashboard(address, verify=False, environ={})) is False
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ssl.create_default_context())
    handshake(jobs._ssl_context(dashboard(address, ca_bundle=str(cert), environ={})))


# --- the cluster check before a submission -----------------------------------------------------


class _FakeJobs:
    """The few Jobs API calls check_cluster makes, with a scripted end of the check job."""

    def __init__(self, statuses, logs):
        self.statuses, self.logs, self.submitted, self.stopped = list(statuses), logs, [], []

    def submit_job(self, **kwargs):
        self.submitted.append(kwargs)
        return kwargs["submission_id"]

    def get_job_status(self, job_id):
        from types import SimpleNamespace

        return SimpleNamespace(value=self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0])

    def get_job_logs(self, job_id):
        return self.logs

    def stop_job(self, job_id):
        self.stopped.append(job_id)
        return True


def _check(statuses, logs, timeout=5.0):
    from raybench.jobs.dashboard import dashboard
    from raybench.jobs.submit import build_submission, check_cluster, load_job_spec

    sub = build_submission(load_job_spec("matrix"), "smoke", "smoke", "/shared/out")
    client = _FakeJobs(statuses, logs)
    return check_cluster(dashboard("http://127.0.0.1:1"), sub, client=client, timeout=timeout, poll_s=0.01), client, sub


def test_the_check_job_runs_with_the_real_jobs_runtime_env_and_reads_the_version():
    from raybench import __version__

    version, client, sub = _check(["PENDING", "RUNNING", "SUCCEEDED"],
                                  f"raybench-check {__version__} /opt/venv/bin/python\n")
    assert version == __version__
    (check,) = client.submitted
    assert check["runtime_env"] == dict(sub.runtime_env) and check["submission_id"] == f"{sub.submission_id}-check"
    assert check["entrypoint"].startswith("python -c ") and "raybench.cli" in check["entrypoint"]


@pytest.mark.parametrize("logs, says", [
    ("Traceback (most recent call last):\n  File \"<string>\", line 1\nModuleNotFoundError: No module named 'raybench'\n",
     "the cluster's Python cannot import raybench: start the head from the project's environment"),
    ("Traceback (most recent call last):\nModuleNotFoundError: No module named 'click'\n",
     "the cluster's Python cannot import 'click', which raybench needs: start the head from the project's environment"),
    ("/bin/sh: 1: python: not found\n", "the cluster has no `python` on its PATH"),
])
def test_a_cluster_that_cannot_import_raybench_is_one_line_naming_the_fix(logs, says):
    from raybench.jobs.submit import ClusterEnvironmentError

    with pytest.raises(ClusterEnvironmentError) as caught:
        _check(["FAILED"], logs)
    message = str(caught.value)
    assert message.startswith(says) and "\n" not in message
    assert "--runtime-env FILE" in message and "install raybench 0.1.0 in the cluster's image" in message


def test_another_raybench_version_on_the_cluster_is_named():
    from raybench.jobs.submit import ClusterEnvironmentError

    with pytest.raises(ClusterEnvironmentError, match=r"imports raybench 0\.0\.9, this is raybench 0\.1\.0"):
        _check(["SUCCEEDED"], "raybench-check 0.0.9 /usr/bin/python3\n")


def test_a_check_that_does_not_finish_is_stopped_and_the_job_goes_ahead():
    version, client, sub = _check(["PENDING"], "", timeout=0.05)
    assert version is None and client.stopped == [f"{sub.submission_id}-check"]


def test_a_head_that_just_started_is_given_time_for_its_job_agent():
    """Right after `ray start --head` the Jobs API answers 500 "No available agent": try again."""
    from raybench import __version__
    from raybench.jobs.dashboard import ClusterError

    class _Starting(_FakeJobs):
        def __init__(self, refusals, *args):
            super().__init__(*args)
            self.refusals = refusals

        def submit_job(self, **kwargs):
            if self.refusals:
                self.refusals -= 1
                raise RuntimeError("Request failed with status code 500: No available agent to submit job, "
                                   "please try again later..")
            return super().submit_job(**kwargs)

    from raybench.jobs.dashboard import dashboard
    from raybench.jobs.submit import submit_job

    dash = dashboard("http://127.0.0.1:1")
    client = _Starting(2, ["SUCCEEDED"], f"raybench-check {__version__} /p\n")
    assert submit_job(dash, client, "submit", poll_s=0.01, submission_id="j") == "j"
    assert client.refusals == 0 and len(client.submitted) == 1
    with pytest.raises(ClusterError, match="No available agent"):
        submit_job(dash, _Starting(99, ["SUCCEEDED"], ""), "submit", wait_s=0.05, poll_s=0.01, submission_id="j")
