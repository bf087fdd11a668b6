"""``trainyard web``: serve the web app and HTTP API; ``trainyard web token ...``: manage access."""

from __future__ import annotations

import click

from ..connection import connect, redact_url, redis_url
from .output import ago, emit_json, json_option, say, table


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.pass_context
def web(ctx: click.Context, host: str, port: int) -> None:
    """Serve the web app and HTTP API (nothing is served without a token or a login).

    On first start an admin token is made and printed once; make more with
    `trainyard web token create --user NAME --role read|admin`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..web import auth, create_app

    url = redis_url(start_embedded=True)
    app = create_app(url)
    token = auth.ensure_admin_token(app.state.conn)
    if token:
        say(f"admin token (shown once, keep it safe): {token}")
    shown = f"[{host}]" if ":" in host else host
    say(f"trainyard web on http://{shown}:{port}  (Redis {redact_url(url)})", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        say("warning: listening beyond this machine; put it behind TLS (a reverse proxy)", err=True)
    _serve(app, host, port)


def _serve(app, host: str, port: int) -> None:
    """Run uvicorn, ending the app's live streams the moment a stop is asked for: uvicorn waits
    for open connections before the app's own shutdown runs, and a live stream never closes by
    itself (it was cancelled after the graceful time-out instead, and the shutdown could hang)."""
    import uvicorn

    class StreamsFirst(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            hub = getattr(app.state, "hub", None)
            if hub is not None:
                hub.close()

    StreamsFirst(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)).run()


@web.group()
def token() -> None:
    """Access tokens: create (printed once), list, revoke."""


@token.command("create")
@click.option("--user", required=True, help="Who the token is for.")
@click.option(
    "--role",
    type=click.Choice(["read", "admin", "trigger"]),
    default="read",
    show_default=True,
    help="read: see everything; admin: change things too; trigger: only fire pipelines' manual triggers.",
)
def token_create(user: str, role: str) -> None:
    """Make a token; only its hash is stored, so it is printed this once."""
    from ..web import auth

    secret, info = auth.create_token(connect(), user, role)
    say(secret)
    say(f"token {info.id} for {info.user} ({info.role})", err=True)


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """Tokens by id, user and role (the tokens themselves are not stored)."""
    from ..web import auth

    infos = auth.list_tokens(connect())
    if as_json:
        emit_json([vars(i) for i in infos])
        return
    table(["id", "user", "role", "created"], [(i.id, i.user, i.role, ago(i.created)) for i in infos])


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by id; its browser sessions end at once."""
    from ..web import auth

    info = auth.revoke(connect(), token_id)
    say(f"revoked token {info.id} of {info.user} ({info.role})")
