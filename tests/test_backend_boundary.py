"""The Redis backend's boundary: only queues/backend/ speaks redis-py, and no Lua hides in .py files.

A call whose method name is a Redis command that nothing else in trainyard uses (``hset``,
``xread``, ``zadd``, ``pipeline``, ``evalsha``, ...) counts as speaking redis-py. ``get``,
``set``, ``delete`` and their like are left out: dicts and routers use those names too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

ROOTS = ("queues", "worker", "controller", "trainyard")
BACKEND = Path("queues") / "backend"

REDIS_COMMANDS = {
    "blpop", "brpop", "eval", "evalsha", "expire", "hdel", "hexists", "hget", "hgetall", "hincrby",
    "hkeys", "hlen", "hmget", "hscan_iter", "hset", "hsetnx", "hvals", "incr", "incrby", "linsert", "lindex",
    "llen", "lpop", "lpush", "lrange", "lrem", "ltrim", "mget", "persist", "pexpire", "pipeline", "pttl",
    "register_script", "rpop", "rpush", "sadd", "scard", "script_load", "sismember", "smembers", "srem",
    "transaction", "xack", "xadd", "xautoclaim", "xclaim", "xdel", "xgroup_create", "xinfo_groups",
    "xlen", "xpending", "xpending_range", "xrange", "xread", "xreadgroup", "xrevrange", "xtrim", "zadd",
    "zcard", "zcount", "zincrby", "zinter", "zmscore", "zpopmin", "zrange", "zrangebylex", "zrangebyscore",
    "zrem", "zremrangebyscore", "zrevrange", "zrevrangebyscore", "zscan_iter", "zscore",
}  # fmt: skip


def _sources():
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            yield path.relative_to(REPO)


def _redis_calls(path: Path) -> list[str]:
    tree = ast.parse((REPO / path).read_text(), str(path))
    return [
        f"{path}:{node.lineno} .{node.func.attr}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in REDIS_COMMANDS
    ]


def test_only_the_backend_speaks_redis_py():
    found = [call for path in _sources() if BACKEND not in path.parents for call in _redis_calls(path)]
    assert not found, "redis-py called outside queues/backend/:\n" + "\n".join(found)


def test_no_lua_in_python_files():
    for path in _sources():
        text = (REPO / path).read_text()
        assert "redis.call(" not in text and "redis.pcall(" not in text, f"Lua source in {path}: put it in a .lua file"


def test_every_lua_script_sits_in_the_backend():
    for root in ROOTS:
        for path in (REPO / root).rglob("*.lua"):
            assert (REPO / BACKEND) in path.parents, f"{path}: Lua scripts live in queues/backend/"


def test_scripts_go_by_sha_and_survive_a_script_flush(conn):
    """Lua runs as EVALSHA (never EVAL with the source); a server that lost its scripts (restart,
    SCRIPT FLUSH) gets them loaded again on the NOSCRIPT answer, and the call goes through."""
    from trainyard import Queue, Task

    Queue.create("q")
    first = Task.create("a", command=["true"]).enqueue("q", priority=5)
    conn.script_flush()
    second = Task.create("b", command=["true"]).enqueue("q", priority=9)  # a push through queue.lua again
    assert [e.task_id for e in Queue("q").entries()] == [second.id, first.id]
    stats = conn.info("commandstats")
    assert stats.get("cmdstat_evalsha", {}).get("calls", 0) >= 2
    assert "cmdstat_eval" not in stats
