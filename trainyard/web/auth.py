"""Access to the web app and API: tokens (only their sha256 is stored), browser sessions, roles.

A token is ``ty_`` plus 32 random bytes (URL-safe). Redis keeps ``sha256(token)`` -> who and which
role, so a dump of Redis reveals no usable token. A browser logs in by posting a token once and
gets a session cookie (random, stored hashed too, expiring); revoking the token ends its sessions.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass

from redis import Redis

from ..queues.backend import documents
from ..queues.errors import InvalidInput

ROLES = ("read", "admin", "trigger")  # trigger: may only fire pipelines' manual triggers (for CI, webhooks)
SESSION_TTL_S = 12 * 3600
USER_NAME_MAX = 64


@dataclass(frozen=True)
class TokenInfo:
    id: str  # first 12 hex characters of the hash: safe to show, used to revoke
    user: str
    role: str
    created: float


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token's user and role."""

    user: str
    role: str
    token_id: str
    token_hash: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check(user: str, role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r} (read, admin or trigger)")
    if not user or len(user) > USER_NAME_MAX or not user.isprintable() or user.strip() != user:
        raise InvalidInput(f"bad user name {user!r}: 1-{USER_NAME_MAX} printable characters, no surrounding spaces")


def create_token(conn: Redis, user: str, role: str) -> tuple[str, TokenInfo]:
    """A new token for ``user`` with ``role``; the token itself is returned once, never stored."""
    _check(user, role)
    token = "ty_" + secrets.token_urlsafe(32)
    hashed = digest(token)
    info = TokenInfo(hashed[:12], user, role, time.time())
    documents.put_token(conn, hashed, json.dumps(asdict(info)))
    return token, info


def list_tokens(conn: Redis) -> list[TokenInfo]:
    infos = [TokenInfo(**json.loads(raw)) for _, raw in documents.tokens(conn)]
    return sorted(infos, key=lambda t: t.created)


def revoke(conn: Redis, token_id: str) -> TokenInfo:
    """Remove the token whose id is ``token_id``; its browser sessions stop working at once."""
    for hashed, raw in documents.tokens(conn):
        info = TokenInfo(**json.loads(raw))
        if info.id == token_id:
            documents.drop_token(conn, hashed)
            return info
    raise InvalidInput(f"no token with id {token_id!r} (see: trainyard web token list)")


def lookup(conn: Redis, token: str) -> Principal | None:
    raw = documents.token(conn, digest(token))
    if raw is None:
        return None
    info = json.loads(raw)
    return Principal(info["user"], info["role"], info["id"], digest(token))


def ensure_admin_token(conn: Redis) -> str | None:
    """On first start: make an admin token and return it (to print once); None when one exists."""
    if not documents.bootstrap_lock(conn, take=True):
        return None  # another process is making it right now
    try:
        if any(t.role == "admin" for t in list_tokens(conn)):
            return None
        token, _ = create_token(conn, "admin", "admin")
        return token
    finally:
        documents.bootstrap_lock(conn, take=False)


def create_session(conn: Redis, principal: Principal) -> str:
    session = secrets.token_urlsafe(32)
    payload = json.dumps(
        {"user": principal.user, "role": principal.role, "token": principal.token_id, "hash": principal.token_hash}
    )
    documents.put_session(conn, digest(session), payload, SESSION_TTL_S)
    return session


def session_principal(conn: Redis, session: str) -> Principal | None:
    """The session's principal, while the session lives and its token is not revoked."""
    raw = documents.session(conn, digest(session))
    if raw is None:
        return None
    data = json.loads(raw)
    if not documents.token_exists(conn, data["hash"]):
        return None
    return Principal(data["user"], data["role"], data["token"], data["hash"])


def drop_session(conn: Redis, session: str) -> None:
    documents.drop_session(conn, digest(session))
