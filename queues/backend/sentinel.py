"""Redis behind Sentinel: ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``.

The hosts are the sentinels; ``service`` is the name they monitor (``sentinel monitor <service>``);
the user and password are the data servers'. ``rediss+sentinel://`` speaks TLS to the servers
(and the sentinels). Query parameters: ``sentinel_password`` (and ``sentinel_username``) when the
sentinels ask for their own. The client asks the sentinels for the current primary on every new
connection, and drops its connections when a server answers as a replica (READONLY): after a
failover, workers, CLI, controllers and the web app reach the new primary by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.connection import BlockingConnectionPool
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

SCHEMES = ("redis+sentinel", "rediss+sentinel")
# A failover takes the sentinels' down-after time plus an election (seconds): a command retries
# (asking the sentinels again each time) for about 20 s before its error reaches the caller.
FAILOVER_RETRIES = 12


def _failover_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), FAILOVER_RETRIES)


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    sentinel_options: dict = field(default_factory=dict)


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SCHEMES


def parse(url: str) -> SentinelTarget:
    """The sentinels, service, database and credentials of a Sentinel URL; ValueError (naming
    no credential) when it is malformed."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    user, _, password = userinfo.partition(":")
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host:
            host, port = item.strip(), "26379"
        if not host or not port.isdigit():
            raise ValueError("each sentinel must be host:port (a port is a number)")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("the path must be /<service>[/<db>] (the name the sentinels monitor)")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError("the database after the service must be a number")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    own = {}
    if query.get("sentinel_password"):
        own["password"] = query["sentinel_password"]
    if query.get("sentinel_username"):
        own["username"] = query["sentinel_username"]
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(user) or None,
        password=unquote(password) or None,
        tls=parts.scheme.lower().startswith("rediss"),
        sentinel_options=own,
    )


class _CappedSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The sentinels' pool of primary connections, capped: a caller waits for a free connection."""


def client(url: str, options: dict, max_connections: int | None = None, pool_wait_s: float = 30.0) -> Redis:
    """A client of the service's current primary (``options``: redis-py connection options), with
    at most ``max_connections`` connections when given (callers wait up to ``pool_wait_s`` for one)."""
    target = parse(url)
    opts = dict(options)
    opts.pop("health_check_interval", None)  # a sentinel-managed pool checks by itself on failure
    if target.tls:
        opts["ssl"] = True
    shared = ("socket_connect_timeout", "socket_timeout", "ssl")
    sentinel_kwargs = {k: v for k, v in opts.items() if k in shared or k.startswith("ssl_")}
    sentinel_kwargs.update(target.sentinel_options)
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs, **opts)
    capped: dict = {}
    if max_connections:
        capped = dict(connection_pool_class=_CappedSentinelPool, max_connections=max_connections, timeout=pool_wait_s)
    return sentinel.master_for(
        target.service,
        db=target.db,
        username=target.username,
        password=target.password,
        retry=_failover_retry(),
        **capped,
    )


def async_client(url: str, options: dict):
    """The asyncio twin of ``client`` (the web app's live views)."""
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    target = parse(url)
    opts = dict(options)
    if target.tls:
        opts["ssl"] = True
    sentinel_kwargs = {k: v for k, v in opts.items() if k in ("socket_connect_timeout", "ssl") or k.startswith("ssl_")}
    sentinel_kwargs.update(target.sentinel_options)
    sentinel = AsyncSentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs, **opts)
    return sentinel.master_for(target.service, db=target.db, username=target.username, password=target.password)
