"""Delivery promises under faults (issue 15): abort at once, nothing of a task outlives it, a dead
worker's leftovers are ended before its task can run elsewhere. Real workers, processes, Docker."""

from __future__ import annotations

import textwrap

from workerproc import WorkerProcess, log_text, wait_for_log, wait_status

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import workers

# No heartbeat (and so no abort-flag backstop, no reaping, no fencing) within any test's life:
# whatever reaches the worker does so through the event stream.
NO_HEARTBEAT = {"TRAINYARD_HEARTBEAT_S": "900", "TRAINYARD_WORKER_TTL_S": "1800", "TRAINYARD_DEAD_AFTER_S": "1800"}

TRAPS_TERM = textwrap.dedent(
    """
    import signal, sys, time
    def on_term(*_):
        print("got SIGTERM", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print("up", flush=True)
    time.sleep(600)
    """
)


def test_abort_is_acted_on_at_the_event_not_at_the_next_heartbeat(conn, tmp_path, monkeypatch):
    """The abort event carries ``previous == "running"``; it used to be taken for "a task ended
    somewhere" and the abort waited for the heartbeat's flag check."""
    monkeypatch.setattr(workers, "DEAD_AFTER_S", 1800.0)  # this test's own waiter reaps nothing
    Queue.create("cpu")
    script = tmp_path / "traps.py"
    script.write_text(TRAPS_TERM)
    task = Task.create("abortee", script=script).enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--grace", "30", env=NO_HEARTBEAT):
        wait_for_log(conn, task.id, "up", exact=True)
        Task.get(task.id).abort()
        done = wait_status(task, timeout=120)  # the heartbeat (the old path) is 900 s away
    assert done.status == TaskStatus.ABORTED
    assert "got SIGTERM" in log_text(conn, task.id)
