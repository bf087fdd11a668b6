"""The Redis connection: ``TRAINYARD_REDIS_URL`` when set, otherwise the embedded server."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable

import redis
import redis.sentinel
from redis.exceptions import AuthenticationError, AuthorizationError, BusyLoadingError

from .embedded import EmbeddedRedis
from .in_task import inside_task, no_redis_here
from .queues.backend import sentinel, server
from .queues.errors import RedisUnavailable
from .settings import settings

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
_process_client: dict = {}  # use_client's settings for this process's clients: name, connection cap
POOL_WAIT_S = 30.0  # the longest a caller waits for a free connection of a capped pool (the socket timeout)


def redact_url(url: str) -> str:
    """The URL with nothing shown that may be a credential (safe to print): everything before the
    last ``@`` (a password with an unencoded ``@`` or ``/`` included) becomes ``user:***``, a
    ``password=`` query value ``***``; a text that is not ``scheme://...`` is not shown at all."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.isalpha():
        return "***" if "@" not in url else "***@" + _hide_query(url.rpartition("@")[2])
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:***" if colon and "/" not in user else "***"
        rest = f"{shown}@{rest}"
    return f"{scheme}://{_hide_query(rest)}"


def _hide_query(text: str) -> str:
    return re.sub(r"(?i)((?:^|[?&;])[^=&;]*pass[^=&;]*=)[^&;]*", r"\1***", text)


def _url_problem(exc: BaseException) -> str:
    """What is wrong with a URL, in words that quote none of it (the parsers quote its parts)."""
    text = str(exc)
    if "scheme" in text:
        return "it must start with redis://, rediss://, unix:// or redis+sentinel://"
    if "sentinel" in text or "service" in text or "database" in text:
        return text
    if "Port" in text or "port" in text:
        return "its port is not a number (a password holding '@', '/' or ':' must be URL-encoded)"
    return f"it cannot be parsed ({type(exc).__name__})"


def redis_url(start_embedded: bool = True) -> str | None:
    """The URL trainyard uses: the configured one, or the embedded server's (started if asked)."""
    configured = settings().redis_url
    if configured:
        return configured
    if inside_task():  # never an embedded server in a task: it would be another, empty Redis
        raise no_redis_here()
    embedded = EmbeddedRedis(settings().embedded_dir)
    return embedded.ensure() if start_embedded else embedded.url()


TLS_VARS = {  # rediss:// settings (variable, Settings field, redis-py option); the URL's own query parameters win
    "TRAINYARD_REDIS_CA": ("redis_ca", "ssl_ca_certs"),  # the CA that signed the server's certificate
    "TRAINYARD_REDIS_CERT": ("redis_cert", "ssl_certfile"),  # a client certificate, for servers that ask for one
    "TRAINYARD_REDIS_KEY": ("redis_key", "ssl_keyfile"),
}


def tls_options() -> dict[str, str]:
    """TLS files named by TRAINYARD_REDIS_CA / _CERT / _KEY; a missing file is refused by name."""
    out = {}
    current = settings()
    for var, (name, option) in TLS_VARS.items():
        path = getattr(current, name)
        if path:
            if not os.path.isfile(path):
                raise RedisUnavailable(f"{var}={path}: no such file")
            out[option] = path
    return out


def use_client(name: str | None = None, max_connections: int | None = None) -> None:
    """Make this process's clients from now on with ``name`` (``CLIENT SETNAME`` on each connection,
    so ``CLIENT LIST`` tells whose connections they are) and at most ``max_connections``
    connections, shared by all its threads: a caller waits (up to ``POOL_WAIT_S``) for a free one
    rather than opening another. A worker uses two: its blocking wait and one for everything else."""
    reset_connections()
    _process_client.clear()
    if name:
        _process_client["client_name"] = "".join(c if "!" <= c <= "~" else "_" for c in name)
    if max_connections:
        _process_client["max_connections"] = max_connections


def client_for(url: str) -> redis.Redis:
    """A checked client for ``url``; raises RedisUnavailable with one line naming address and cause."""
    options = {"socket_connect_timeout": 5, "socket_timeout": 30, "health_check_interval": 15}
    if not url.startswith("unix:"):
        options["socket_keepalive"] = True
    if url.startswith("rediss:") or url.startswith("rediss+sentinel:"):
        options.update(tls_options())
    if "client_name" in _process_client:
        options["client_name"] = _process_client["client_name"]
    cap = _process_client.get("max_connections")
    try:
        if sentinel.is_sentinel_url(url):
            client = sentinel.client(url, options, max_connections=cap, pool_wait_s=POOL_WAIT_S)
        elif cap:
            pool = redis.BlockingConnectionPool.from_url(url, max_connections=cap, timeout=POOL_WAIT_S, **options)
            client = redis.Redis(connection_pool=pool)
        else:
            client = redis.Redis.from_url(url, **options)
        server.ping(client)
    except (ValueError, TypeError) as exc:  # a malformed URL or an option the URL's scheme refuses
        raise RedisUnavailable(f"bad Redis URL {redact_url(url)!r}: {_url_problem(exc)}") from None
    except (redis.RedisError, OSError) as exc:
        error = RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {_cause(exc)}")
        error.transient = _transient(exc)
        raise error from None
    return client


def connect() -> redis.Redis:
    """The process's shared default connection (created and checked on first use)."""
    current = settings()
    key = current.redis_url or f"embedded:{current.embedded_dir}"
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = client_for(redis_url())
        return client


def connect_waiting(wait_s: float, tell: Callable[[str], None]) -> redis.Redis:
    """``connect()``, riding out a Redis that is not up yet (connection refused, closed or reset,
    timed out, still loading, no primary elected) for up to ``wait_s`` seconds: a worker started
    with, or just before, its Redis waits for it. A wrong password, URL, host or certificate is
    refused at once; ``tell`` gets one line when the wait begins."""
    deadline = time.monotonic() + wait_s
    pause = 0.2
    told = False
    while True:
        try:
            return connect()
        except RedisUnavailable as exc:
            if not getattr(exc, "transient", False) or time.monotonic() + pause > deadline:
                raise
            if not told:
                tell(f"{exc}; waiting up to {wait_s:g}s for it")
                told = True
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def reset_connections() -> None:
    """Forget cached clients (after the environment changed, e.g. in tests)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def _transient(exc: BaseException) -> bool:
    """A Redis that is not up yet, or restarting (worth waiting for), rather than a wrong setting."""
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return False
    if isinstance(exc, BusyLoadingError | redis.sentinel.MasterNotFoundError):
        return True
    cause = _cause(exc)
    if cause.startswith("authentication") or cause == "unknown host" or "certificate" in cause.lower():
        return False  # a wrong setting: waiting will not mend it
    # refused, timed out, closed or reset by the server (a restart, a proxy in front of it)
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | ConnectionError | TimeoutError)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "Connection refused" in text:
        return "connection refused"
    if "invalid username-password" in text.lower() or "WRONGPASS" in text:
        return "authentication failed (wrong user or password)"
    if "NOAUTH" in text or "Authentication required" in text:
        return "authentication required (no password given)"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if "Timeout" in text or "timed out" in text:
        return "timed out"
    return text.rstrip(".")
