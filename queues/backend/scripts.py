"""The Lua scripts beside this module: read once, sent by SHA.

Each ``<name>.lua`` is one script holding several commands (the first argument picks one), the
way Dramatiq's ``dispatch.lua`` does. A connection gets one redis-py ``Script`` per file, made
once: calls go out as ``EVALSHA``, and a server that does not know the script yet (a restart, a
``SCRIPT FLUSH``) answers ``NOSCRIPT``, upon which the script is loaded and the call repeated.
Inside a pipeline the scripts are loaded before the pipeline runs.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from redis import Redis
from redis.commands.core import Script

SOURCES: dict[str, str] = {path.stem: path.read_text() for path in sorted(Path(__file__).parent.glob("*.lua"))}

_per_connection: weakref.WeakKeyDictionary[Redis, dict[str, Script]] = weakref.WeakKeyDictionary()


def _scripts(conn: Redis) -> dict[str, Script]:
    found = _per_connection.get(conn)
    if found is None:
        found = {name: conn.register_script(source) for name, source in SOURCES.items()}
        _per_connection[conn] = found
    return found


def run(conn: Redis, script: str, command: str, keys: list, args: list, client=None):
    """Run ``command`` of ``<script>.lua`` with ``keys`` and ``args``, on ``client`` (a pipeline)
    when given, else on ``conn``."""
    return _scripts(conn)[script](keys=keys, args=[command, *args], client=client)
