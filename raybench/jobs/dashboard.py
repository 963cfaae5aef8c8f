"""The Ray dashboard's Jobs API as a person at a terminal needs it: bounded, authenticated, clear.

Ray's JobSubmissionClient does the protocol; this module adds what it lacks:

- every HTTP call is bounded (connect and read timeouts): Ray's client sets none, so a
  black-holed address would hang for minutes;
- the cluster's token is sent the way a Ray driver finds it (RAY_AUTH_TOKEN, then the file in
  RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token; RAY_AUTH_MODE=disabled sends none), also when
  RAY_AUTH_MODE is unset: that is how `ray.init()` and `ray start` behave when a token exists
  (`ray job submit` alone would need RAY_AUTH_MODE=token), and Ray 2.60 clusters turn token
  authentication on by default. Tokens and header values are never printed: `Dashboard` keeps
  them out of its repr, and messages name only where a token came from;
- headers (`K=V` or `K=@FILE`) and TLS options for dashboards behind an auth proxy;
- an explicit address wins over RAY_ADDRESS / RAY_API_SERVER_ADDRESS (Ray's client lets the
  environment override its argument, which would silently send a job to another cluster);
- failures become one-line ClusterErrors that say what to do.

Nothing here imports ray at module level: the CLI stays fast.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from raybench.errors import RaybenchError


class ClusterError(RaybenchError):
    """The Ray dashboard (Jobs API) cannot be reached, or refused a request."""


class ClusterAuthError(ClusterError):
    """The dashboard asked for credentials (401) or rejected the ones sent (403)."""


# ---------------------------------------------------------------------------------------------
# Where the Jobs API is and how to talk to it


@dataclass(frozen=True)
class Dashboard:
    """How to reach one cluster's Jobs API. Header values (tokens) never appear in repr."""

    address: str  # http(s)://host:port, no trailing slash
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify: bool | str = True  # False, True, or a CA bundle (file or directory)
    timeout: float = 30.0  # seconds to wait for an answer; connecting gets min(5, timeout)
    token_source: str | None = None  # where the Authorization header came from, for messages

    @property
    def connect_timeout(self) -> float:
        return min(5.0, self.timeout)

    @property
    def shown(self) -> str:
        """The address as it may be printed (a password in the URL is masked)."""
        return redact_url(self.address)

    def job_url(self, job_id: str) -> str:
        """The job's page in the Ray dashboard (a hash route of the dashboard's web app)."""
        return f"{self.shown}/#/jobs/{job_id}"


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def normalize_address(address: str) -> str:
    """http(s)://host:port of the dashboard; a bare host:port means http."""
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClusterError(
            f"--address {redact_url(address)!r} is not the dashboard's HTTP address: give "
            "http://HEAD:8265 (the Ray dashboard port, not the ray:// client or the GCS port)"
        )
    return address


def find_token(environ: Mapping[str, str] | None = None, home: Path | None = None) -> tuple[str, str] | None:
    """(token, where it came from) as a Ray process finds it, or None.

    Same order as Ray's AuthenticationTokenLoader: RAY_AUTH_TOKEN if non-empty, then the file
    named by RAY_AUTH_TOKEN_PATH (an unreadable or empty file is an error, as in Ray), then
    ~/.ray/auth_token. Surrounding whitespace is stripped, as Ray does.
    """
    environ = os.environ if environ is None else environ
    if environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    token = environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token, "$RAY_AUTH_TOKEN"
    if environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
        token = _read_token(path)
        if not token:
            raise ClusterAuthError(
                f"RAY_AUTH_TOKEN_PATH is set but {path} cannot be read or is empty: point it at "
                "the file holding the cluster's token, or unset it"
            )
        return token, f"the file in $RAY_AUTH_TOKEN_PATH ({path})"
    path = (Path.home() if home is None else home) / ".ray" / "auth_token"
    token = _read_token(path)
    return (token, str(path)) if token else None


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def parse_headers(items: Sequence[str]) -> dict[str, str]:
    """`K=V` pairs; `K=@FILE` reads the value from FILE (keeps secrets out of `ps` and history)."""
    headers = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ClusterError(f"--header {key.strip() or item!r}: expected NAME=VALUE or NAME=@FILE")
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise ClusterError(f"--header {key.strip()}: cannot read {path} ({exc.strerror})") from None
        headers[key.strip()] = value
    return headers


def dashboard(address: str, headers: Sequence[str] = (), verify: bool = True, ca_bundle: str | None = None,
              timeout: float = 30.0, environ: Mapping[str, str] | None = None) -> Dashboard:
    """A Dashboard with the user's headers plus the cluster token (unless they sent their own)."""
    parsed = parse_headers(headers)
    source = "--header Authorization" if any(k.lower() == "authorization" for k in parsed) else None
    if source is None:
        found = find_token(environ)
        if found:
            parsed["Authorization"] = f"Bearer {found[0]}"
            source = found[1]
    if ca_bundle is not None:
        if not Path(ca_bundle).exists():
            raise ClusterError(f"--ca-bundle {ca_bundle}: no such file or directory")
        verify = str(ca_bundle)
    if timeout <= 0:
        raise ClusterError("--timeout must be a positive number of seconds")
    return Dashboard(normalize_address(address), parsed, verify, float(timeout), source)


@contextmanager
def _scoped_env_without(*names: str) -> Iterator[None]:
    """Ray's client prefers RAY_API_SERVER_ADDRESS / RAY_ADDRESS over its argument; hide them
    while it resolves the address, so that --address means what it says."""
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(dash: Dashboard):
    """A JobSubmissionClient whose every HTTP request is bounded by the Dashboard's timeouts.

    Its constructor already asks the cluster for its version, so a dead address, a missing
    token or a server that is not a Ray dashboard fails here, in seconds.
    """
    from ray.job_submission import JobSubmissionClient

    from raybench.ray_runtime import configure_ray_console

    class BoundedClient(JobSubmissionClient):
        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", (dash.connect_timeout, dash.timeout))
            return super()._do_request(method, endpoint, **kwargs)

    configure_ray_console()  # Ray's client logs each packaging step; -v shows them
    with translate_errors(dash, "connect"), _scoped_env_without("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        return BoundedClient(dash.address, headers=dict(dash.headers), verify=dash.verify)


@contextmanager
def translate_errors(dash: Dashboard, action: str) -> Iterator[None]:
    """Turn the client's exceptions into one-line ClusterErrors that say what to do."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        raise ClusterAuthError(auth_message(dash, "403" in str(exc) or "Forbidden" in str(exc))) from None
    except (requests.exceptions.RequestException, ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(describe_failure(dash, action, exc)) from None


def describe_failure(dash: Dashboard, action: str, exc: BaseException) -> str:
    import requests

    # Ray's version check re-raises connection problems as a bare ConnectionError; the
    # requests exception it replaced says whether it was TLS, a timeout or a refusal.
    if isinstance(exc, ConnectionError) and isinstance(exc.__context__, requests.exceptions.RequestException):
        exc = exc.__context__
    where = f"the Ray dashboard at {dash.shown}"
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_message(dash, exc)
    if isinstance(exc, requests.exceptions.Timeout):
        return (f"{where} did not answer within {dash.timeout:g} s (trying to {action}): check the address "
                "and that the head node is up (raise --timeout for a slow link)")
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
        return (f"cannot reach {where}: is the head node up and is this its dashboard "
                "port (8265 by default; from outside Kubernetes use `kubectl port-forward "
                "svc/raybench-head-svc 8265:8265`)?")
    if isinstance(exc, requests.exceptions.RequestException) or "Version check" in str(exc):
        return f"{where} answered, but not as a Ray Jobs API (trying to {action}): {_short(exc)}"
    if "status code 404" in str(exc) or "does not exist" in str(exc):
        return f"{where}: {_short(exc)} (list its jobs with `raybench status`)"
    return f"{where} could not {action}: {_short(exc)}"


def tls_message(dash: Dashboard, exc: BaseException) -> str:
    """Why TLS failed, in OpenSSL's words (self-signed, expired, hostname mismatch), and what to
    pass instead."""
    where = f"the Ray dashboard at {dash.shown}"
    text = str(exc)
    failed = re.search(r"certificate verify failed: (.+?)\.? \(_ssl", text)
    if failed is None:
        other = re.search(r"\[SSL: \w+\] (.+?) \(_ssl", text)
        return (f"TLS handshake with {where} failed ({other.group(1) if other else _short(exc)}): "
                "check that this port serves https (a plain http dashboard takes an http:// address)")
    if isinstance(dash.verify, str):
        fix = (f"it does not verify against --ca-bundle {dash.verify}: pass the CA that signed it "
               "(or --no-verify on a network you trust)")
    else:
        fix = "pass its CA with --ca-bundle FILE (or --no-verify on a network you trust)"
    return f"TLS verification failed for {where} ({failed.group(1)}): {fix}"


def auth_message(dash: Dashboard, rejected: bool) -> str:
    """Why authentication failed and how to fix it; names the token's source, never the token."""
    where = f"the Ray dashboard at {dash.shown}"
    how = ("copy the cluster's token (on the head node: `ray get-auth-token`) to ~/.ray/auth_token, "
           "or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH; behind an auth proxy pass its "
           "credentials with --header NAME=VALUE (or NAME=@FILE)")
    if rejected:
        return (f"authentication failed: {where} rejected the token from {dash.token_source or 'the headers'} "
                f"(403 Forbidden). It is not this cluster's token: {how}")
    sent = f"the token from {dash.token_source} was not accepted" if dash.token_source else "no token was sent"
    return (f"authentication required: {where} answered 401 Unauthorized and {sent}. "
            f"Ray 2.60 clusters use token authentication by default: {how}")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
