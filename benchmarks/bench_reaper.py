"""What one reaper pass costs Redis when the fleet is alive (issue 17: a reaper whose cost follows
the dead, not the living).

Run from the repository root::

    python -m benchmarks.bench_reaper [--claims 100,1000,10000] [--dead 0,10] [--passes 10]

On a throwaway redis-server: N fresh claims held by N/2 live workers (their registry entries list
the tasks), plus D claims nothing refreshed for longer than the dead-after bound whose tasks no
longer exist (each pass drops them: what it must do for the dead). Measured per pass, over
``--passes`` passes (the dead claims written again before each): Redis's output bytes and
commands (``INFO stats``, the commands inside scripts included) and the pass's wall time. The
pass is ``reaper._reap``, the work under the fleet's lease and lock: a fresh server has been up for
less than the dead-after bound, when ``reaper.reap`` judges nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RedisServer  # noqa: E402
from trainyard.queues import keys, reaper  # noqa: E402
from trainyard.queues.backend import fleet  # noqa: E402

DEAD_AFTER_S = 20.0


def _live(conn, claims: int) -> None:
    """``claims`` fresh claims of ``claims / 2`` live workers, each listing its tasks."""
    now = time.time()
    workers = max(1, claims // 2)
    with conn.pipeline(transaction=False) as pipe:
        for i in range(claims):
            claim = {"worker": f"worker-{i % workers}", "host": "bench", "ts": now, "queue": "q", "pgid": 1}
            fleet.put_claim(pipe, f"live-{i:09d}", json.dumps(claim), now)
        for w in range(workers):
            current = [f"live-{i:09d}" for i in range(w, claims, workers)]
            pipe.set(keys.worker(f"worker-{w}"), json.dumps({"name": f"worker-{w}", "current": current}))
        pipe.execute()


def _dead(conn, count: int) -> None:
    old = time.time() - 10 * DEAD_AFTER_S
    for i in range(count):
        claim = {"worker": "gone", "host": "bench", "ts": old, "queue": "q"}
        fleet.put_claim(conn, f"dead-{i:09d}", json.dumps(claim), old)


def _counters(conn) -> tuple[int, int]:
    info = conn.info("stats")
    return info["total_net_output_bytes"], info["total_commands_processed"]


def measure(conn, claims: int, dead: int, passes: int) -> dict:
    conn.flushall()
    _live(conn, claims)
    if conn.hlen(keys.CLAIMS) != claims:
        raise RuntimeError("the live claims were not written")
    info_bytes = -(_counters(conn)[0] - _counters(conn)[0])  # what one INFO reply adds to the output
    reaper._reap(conn, DEAD_AFTER_S)  # warm: the script loaded
    out_bytes = commands = 0
    seconds = 0.0
    for _ in range(passes):
        _dead(conn, dead)
        bytes0, cmds0 = _counters(conn)
        start = time.perf_counter()
        done = reaper._reap(conn, DEAD_AFTER_S)
        seconds += time.perf_counter() - start
        bytes1, cmds1 = _counters(conn)
        out_bytes += bytes1 - bytes0 - info_bytes
        commands += cmds1 - cmds0 - 1  # less the INFO itself
        if len(done) != dead or any(d.outcome != "dropped" for d in done):
            raise RuntimeError(f"expected {dead} dropped claims, got {done}")
    return {
        "claims": claims,
        "dead": dead,
        "out_bytes": out_bytes / passes,
        "commands": commands / passes,
        "ms": seconds / passes * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", default="100,1000,10000", help="live claims per row")
    parser.add_argument("--dead", default="0,10", help="dead claims per pass")
    parser.add_argument("--passes", type=int, default=10)
    args = parser.parse_args(argv)
    print("| live claims | dead per pass | Redis output per pass | commands per pass | pass time |")
    print("|---|---|---|---|---|")
    with RedisServer() as server:
        conn = server.client()
        for claims in (int(x) for x in args.claims.split(",")):
            for dead in (int(x) for x in args.dead.split(",")):
                row = measure(conn, claims, dead, args.passes)
                print(
                    f"| {claims:,} | {dead} | {row['out_bytes']:,.0f} B | {row['commands']:.0f} | {row['ms']:.2f} ms |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
