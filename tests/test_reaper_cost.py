"""What a reaper pass costs Redis when there is nothing to reap (issue 17: the fleet makes one pass
every few seconds, so the usual pass must be cheap), and that a pass with work still does it. Real
Redis, the real scripts; Redis's own command counters (INFO commandstats) tell what was sent."""

from __future__ import annotations

import time

from trainyard import Queue, Task
from trainyard.queues import keys, reaper
from trainyard.queues.backend import fleet
from trainyard.queues.dispatch import Dispatcher


def _calls(conn, *names: str) -> dict[str, int]:
    stats = conn.info("commandstats")
    return {n: int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names}


def _claimed(conn, worker: str) -> str:
    task = Task.create("t", command=["true"]).enqueue("cpu")
    assert Dispatcher(conn, worker, "h").claim_head("cpu", task.id)
    return task.id


def _sent_during(conn, action) -> list[str]:
    """The commands Redis received (``MONITOR``: script commands included) while ``action`` ran."""
    with conn.monitor() as monitor:  # monitoring from here on (MONITOR has been answered)
        action()
        conn.echo("end-of-pass")
        seen = []
        while (command := monitor.next_command()["command"]) != "ECHO end-of-pass":
            seen.append(command)
    return seen


def test_a_pass_with_only_fresh_claims_takes_no_lock_and_no_server_check(conn):
    Queue.create("cpu")
    task_id = _claimed(conn, "w1")
    done: list = []
    sent = _sent_during(conn, lambda: done.extend(reaper.reap(conn, 60.0)))
    assert done == []
    assert sent  # the pass read the stale end of the claims' index
    assert not [c for c in sent if keys.REAPER_LOCK in c]  # no lock taken
    assert not [c for c in sent if c.upper().startswith("INFO")]  # no server-uptime check
    assert conn.hexists(keys.CLAIMS, task_id)


def test_a_pass_that_finds_a_dead_workers_claim_still_takes_the_lock_and_reaps_it(conn):
    Queue.create("cpu")
    task_id = _claimed(conn, "gone")  # a worker with no registry entry: dead
    fleet.heartbeat(conn, "gone", "{}", 60_000, time.time() - 30, [task_id, ""], announce=False)
    conn.delete(keys.worker("gone"))
    while fleet.server_uptime_s(conn) < 1:  # the uptime guard: a server up for less than the bound reaps nothing
        time.sleep(0.1)
    bound = float(min(10, fleet.server_uptime_s(conn)))  # the claim is 30 s old: stale for this bound
    before = _calls(conn, "set")
    assert [r.outcome for r in reaper.reap(conn, bound)] == ["returned"]
    assert _calls(conn, "set")["set"] > before["set"]  # the lock
    assert not conn.hexists(keys.CLAIMS, task_id)
