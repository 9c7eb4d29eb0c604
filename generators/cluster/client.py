"""A Kubernetes API client for one target, and the one raw request every call of this package goes through.

:func:`api_client` builds a :class:`kubernetes.client.ApiClient` from a :class:`ClusterTarget`: a kubeconfig
(optionally a context, with ``server`` overriding its URL), or a server URL + CA file + bearer-token file.
The environment's ``HTTP(S)_PROXY``/``NO_PROXY`` are ignored on purpose: the proxy is ``target.proxy`` or
none, so a lab address is reached only through the tunnel it names, never by a direct host connection.

With ``proxy`` (an ``http://HOST:PORT`` HTTP CONNECT proxy) every HTTPS request opens a CONNECT tunnel to
the server's host:port as written in ``server``; TLS then runs inside the tunnel and is verified against
the CA with that same host (IP SAN or DNS SAN), exactly as without a proxy.

:func:`request` sends one request with the target's timeout and maps every transport failure to an
:class:`~generators.errors.EnvironmentProblem` that names the server. The token is never printed.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import load_kube_config

from ..errors import EnvironmentProblem, InputError, LabToolError

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClusterTarget:
    """Where a Kubernetes API is and how to authenticate to it.

    ``server``: ``https://HOST:PORT`` (the host as the serving certificate names it); may be empty with a
    kubeconfig. ``ca_file``/``token_file``: without a kubeconfig. ``proxy``: an HTTP CONNECT proxy URL.
    ``timeout``: seconds for connecting and for each read of one request.
    """

    server: str
    ca_file: Path | None = None
    token_file: Path | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    proxy: str | None = None
    timeout: float = DEFAULT_TIMEOUT


class ClusterUnreachable(EnvironmentProblem):
    """The API server could not be reached (refused, timed out, TLS failed, the proxy refused)."""


class ClusterAuthFailed(EnvironmentProblem):
    """The API server rejected the credentials (401) or the permissions (403)."""


class ApiRequestFailed(LabToolError):
    """The API server answered with an error status not handled by the caller; ``status`` and ``body`` hold it."""

    def __init__(self, message: str, status: int, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or {}

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", ""))


class ClusterClient(k8s.ApiClient):
    """An ApiClient that remembers the server it was made for and the timeout of every request."""

    def __init__(self, configuration: k8s.Configuration, server: str, timeout: float):
        super().__init__(configuration=configuration)
        self.server = server
        self.timeout = timeout


def _check_url(value: str, what: str, schemes: tuple[str, ...]) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise InputError(f"{what} {value!r} is not a {' or '.join(s + '://HOST:PORT' for s in schemes)} URL; "
                         f"write it like {schemes[0]}://10.31.0.10:6443")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise InputError(f"{what} {value!r}: {exc}; write it like {schemes[0]}://10.31.0.10:6443") from exc
    return parts


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"token file {path}: cannot read it ({exc.strerror}); give the file that holds the "
                         "bearer token of the API server") from exc
    if not token or any(ch.isspace() for ch in token):
        raise InputError(f"token file {path} is empty or holds more than one word; it must hold the bearer token "
                         "of the API server, on one line")
    return token


def _pin(cfg: k8s.Configuration, host: str | None) -> None:
    """Keep our corrections across the kubeconfig loader's refresh hook, which runs before every request and
    writes back the kubeconfig's server URL and its token (with a tokenFile's trailing newline, an invalid
    header): strip the token and put back the ``server`` override, now and after every refresh."""
    hook = cfg.refresh_api_key_hook

    def fix(c: k8s.Configuration) -> None:
        if hook is not None:
            hook(c)
        key = c.api_key.get("authorization")
        if isinstance(key, str):
            c.api_key["authorization"] = key.strip()
        if host:
            c.host = host

    fix(cfg)
    cfg.refresh_api_key_hook = fix


def _configuration(target: ClusterTarget) -> tuple[k8s.Configuration, str]:
    cfg = k8s.Configuration()
    if target.kubeconfig is not None:
        if not Path(target.kubeconfig).is_file():
            raise InputError(f"kubeconfig {target.kubeconfig} does not exist; give the path of a kubeconfig file")
        try:
            load_kube_config(config_file=str(target.kubeconfig), context=target.context,
                             client_configuration=cfg, persist_config=False)
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            where = f" (context {target.context!r})" if target.context else ""
            raise InputError(f"kubeconfig {target.kubeconfig}{where} cannot be used: {exc}; check the file "
                             "and the context name") from exc
        if target.server:
            _check_url(target.server, "server", ("https", "http"))
        _pin(cfg, target.server.rstrip("/") or None)
    else:
        if not target.server:
            raise InputError("no API server given: set server (https://HOST:PORT) or a kubeconfig")
        scheme = _check_url(target.server, "server", ("https", "http")).scheme
        cfg.host = target.server.rstrip("/")
        if scheme == "https":
            if target.ca_file is None:
                raise InputError(f"server {target.server}: no CA file given; set ca_file to the CA that signed "
                                 "the API server's certificate (verification is never switched off)")
            if not Path(target.ca_file).is_file():
                raise InputError(f"CA file {target.ca_file} does not exist; give the CA of {target.server}")
            cfg.ssl_ca_cert = str(target.ca_file)
        if target.token_file is not None:
            cfg.api_key["authorization"] = _read_token(Path(target.token_file))
            cfg.api_key_prefix["authorization"] = "Bearer"
    # The proxy is ours to choose: Configuration() reads HTTP(S)_PROXY from the environment, which would
    # send lab traffic to some other proxy (or, with NO_PROXY, straight from the host).
    cfg.proxy = None
    cfg.no_proxy = None
    if target.proxy:
        _check_url(target.proxy, "proxy", ("http",))
        if not cfg.host.startswith("https://"):
            raise InputError(f"proxy {target.proxy} is an HTTP CONNECT tunnel, used for https:// servers only; "
                             f"the server is {cfg.host}")
        cfg.proxy = target.proxy
    # No urllib3 retries: each would cost another timeout (a TLS handshake that hangs counts as a read), so
    # an unreachable server would fail only after several. request() retries only a dropped connection.
    cfg.retries = False
    return cfg, cfg.host


def api_client(target: ClusterTarget) -> ClusterClient:
    """A client for ``target``; nothing is contacted until the first request."""
    if target.timeout <= 0:
        raise InputError(f"timeout {target.timeout}: must be a positive number of seconds")
    cfg, server = _configuration(target)
    out = ClusterClient(cfg, server, target.timeout)
    if target.proxy and not isinstance(out.rest_client.pool_manager, urllib3.ProxyManager):
        # the kubernetes client asks requests.utils.should_bypass_proxies (system proxy settings) first;
        # a direct connection is never an acceptable fallback for a target that names its proxy
        raise EnvironmentProblem(f"the system's proxy settings exclude {server} from the proxy {target.proxy}; "
                                 "unset them (no_proxy) for this command")
    return out


def _timeout(client: k8s.ApiClient, timeout: float | None) -> tuple[float, float]:
    t = timeout if timeout is not None else float(getattr(client, "timeout", DEFAULT_TIMEOUT))
    return (t, t)  # (connect, read): the kubernetes client ignores a float that is not a pair


def server_of(client: k8s.ApiClient) -> str:
    return str(getattr(client, "server", None) or client.configuration.host)


def request(client: k8s.ApiClient, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
            body: Any = None, content_type: str = "application/json",
            timeout: float | None = None) -> tuple[int, dict[str, Any]]:
    """Send one request; return (status, JSON body) for any HTTP status (2xx or not).

    Transport failures raise :class:`ClusterUnreachable`; 401/403 raise :class:`ClusterAuthFailed`.
    Every other status is the caller's to judge (see :func:`expect`).
    """
    server = server_of(client)
    for attempt in (1, 2):
        try:
            status, raw = _send(client, method, path, query, body, content_type, timeout)
            break
        except urllib3.exceptions.ProtocolError as exc:
            # the server closed a pooled keep-alive connection as it was reused: once more, on a new one
            if attempt == 2:
                raise ClusterUnreachable(_transport_message(server, client, exc)) from None
        except k8s.ApiException as exc:  # status 0: the kubernetes client turns a TLS failure into that
            if "SSLError" in str(exc.reason):
                raise ClusterUnreachable(_tls_message(server, client, str(exc.reason))) from None
            raise ApiRequestFailed(f"{method} {server}{path} could not be sent: {exc.reason}", 0) from None
        except (urllib3.exceptions.HTTPError, OSError, ssl.SSLError) as exc:
            raise ClusterUnreachable(_transport_message(server, client, exc)) from None
        except ValueError:  # http.client refusing a header; its message would show the token
            raise InputError(f"a request to {server} could not be sent: a header is not valid; is the token "
                             "(file or kubeconfig user) a single line?") from None
    data = _json(raw)
    if status == 401:
        raise ClusterAuthFailed(f"the API server at {server} rejected the credentials (401 Unauthorized); check "
                                "the token file or the kubeconfig's user")
    if status == 403:
        raise ClusterAuthFailed(f"the API server at {server} forbids {method} {path} (403): "
                                f"{data.get('message', '')}; the user needs RBAC permission for it")
    return status, data


def _send(client: k8s.ApiClient, method: str, path: str, query: list[tuple[str, str]] | None, body: Any,
          content_type: str, timeout: float | None) -> tuple[int, bytes | str | None]:
    """(status, raw body); an HTTP error status is returned, not raised (ApiException only for status 0)."""
    headers = {"Accept": "application/json", "Content-Type": content_type}
    try:
        resp = client.call_api(
            path, method, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
            _request_timeout=_timeout(client, timeout),
        )
    except k8s.ApiException as exc:
        if not exc.status:
            raise
        return int(exc.status), exc.body
    return int(resp.status), resp.data


def expect(client: k8s.ApiClient, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> dict:
    """:func:`request`, raising :class:`ApiRequestFailed` unless the status is one of ``ok``."""
    status, data = request(client, method, path, **kw)
    if status not in ok:
        raise ApiRequestFailed(f"{method} {server_of(client)}{path}: {status} {data.get('reason', '')}: "
                               f"{data.get('message', data)}", status, data)
    return data


def server_version(client: k8s.ApiClient, timeout: float | None = None) -> dict:
    """``GET /version``: the cheapest way to prove the server is there and speaks Kubernetes."""
    return expect(client, "GET", "/version", ok=(200,), timeout=timeout)


def _json(raw: bytes | str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        return {"message": text.strip()[:500]}
    return data if isinstance(data, dict) else {"items": data}


def _via(client: k8s.ApiClient) -> str:
    proxy = client.configuration.proxy
    return f" through the proxy {proxy}" if proxy else ""


def _tls_message(server: str, client: k8s.ApiClient, reason: str) -> str:
    reason = " ".join(reason.split()).removeprefix("SSLError ")
    return (f"TLS to the API server at {server}{_via(client)} failed: {reason}; check that the CA file is the one "
            f"that signed the server's certificate and that the certificate names the host in {server}")


def _transport_message(server: str, client: k8s.ApiClient, exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, urllib3.exceptions.ProxyError):
        reason = reason.original_error if getattr(reason, "original_error", None) else reason
    text = " ".join(str(reason).split())
    if isinstance(reason, (ssl.SSLError, urllib3.exceptions.SSLError)):
        return _tls_message(server, client, text)
    timeout = getattr(client, "timeout", None)
    within = f" within {timeout:g}s" if isinstance(timeout, (int, float)) else ""
    return (f"cannot reach the API server at {server}{_via(client)}{within}: {text}; check that it is running "
            "and that the address (and the proxy, if any) is right")
