"""The guard: a small process beside each worker that ends the worker's tasks when the worker dies.

A worker killed with SIGKILL takes its task processes with it (``PR_SET_PDEATHSIG``), but not what
they left: grandchildren that detached (``setsid``, a double fork) and docker containers, which the
Docker engine keeps running. With no other worker on the host nothing would end them, and once the
reaper hands the task to another host two attempts would run at once. So each worker starts a guard
in its own session and tells it, through a pipe, which attempts run (``start``/``end`` lines, and
``docker`` with the container's name). When the pipe reaches end-of-file — the worker is gone,
however it died — the guard kills every process that carries one of those attempts in its
environment (``TRAINYARD_TASK_ID`` and ``TRAINYARD_ATTEMPT``) and removes their containers, within
moments, long before any reaper may declare the worker dead (``TRAINYARD_DEAD_AFTER_S``).

Standard library only (site-packages and the Docker SDK are loaded only when a container must go):
the guard runs as ``python -I -S guard.py`` and costs a bare interpreter (~11 MB). ``kill_task`` is
also the worker's own sweep at the end of every task.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

MARKS = ("TRAINYARD_TASK_ID", "TRAINYARD_ATTEMPT", "TRAINYARD_WORKER", "TRAINYARD_RUN_DIR")


def task_processes() -> list[tuple[int, dict[str, str]]]:
    """Every process (not this one) that belongs to a trainyard task, with its task id, attempt and
    worker as its environment names them (read from /proc: processes that detached keep them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                raw = handle.read()
        except OSError:  # gone, a kernel thread, or not ours to read
            continue
        if b"TRAINYARD_TASK_ID=" not in raw:
            continue
        marks = {}
        for item in raw.split(b"\0"):
            name, _, value = item.partition(b"=")
            if name.decode(errors="replace") in MARKS:
                marks[name.decode()] = value.decode(errors="replace")
        found.append((int(entry), marks))
    return found


def kill_matching(match) -> int:
    """SIGKILL every task process for which ``match(marks)`` holds, again until a pass finds none
    (one may fork meanwhile). Returns how many were killed."""
    killed = 0
    for _ in range(10):
        pids = [pid for pid, marks in task_processes() if match(marks)]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                continue
    return killed


def kill_task(task_id: str, attempt: int | None = None) -> int:
    """End every process of a task's attempt (any attempt when None), however it detached."""
    wanted = None if attempt is None else str(attempt)
    return kill_matching(
        lambda m: m.get("TRAINYARD_TASK_ID") == task_id and (wanted is None or m.get("TRAINYARD_ATTEMPT") == wanted)
    )


def remove_containers(names: list[str]) -> None:
    """Remove containers by name (best effort: no engine, no SDK, already gone)."""
    if not names:
        return
    try:
        if "site" not in sys.modules or not any("-packages" in p for p in sys.path):
            import site

            site.main()  # the guard runs without site-packages (-S) until it needs the Docker SDK
        import docker

        engine = docker.from_env(timeout=30)
    except Exception:  # noqa: BLE001 - no engine: nothing can be running in one
        return
    for name in names:
        try:
            engine.containers.get(name).remove(force=True)
        except Exception:  # noqa: BLE001 - gone already
            continue


class Guard:
    """The worker's side: starts the guard and tells it which attempts run. Never raises: a guard
    that is gone costs only the protection it gave (the reaper's clean-up on the host remains)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__)],  # a bare interpreter: ~11 MB
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a signal to the worker's process group leaves it alone
                close_fds=True,
                text=True,
                bufsize=1,
            )
        except OSError:
            self.proc = None

    def note(self, op: str, task_id: str, attempt: int, extra: str = "") -> None:
        """Tell the guard: ``start``, ``docker`` (with the container name) or ``end`` of an attempt."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            return
        with self._lock:
            try:
                proc.stdin.write(f"{op} {task_id} {attempt} {extra}".rstrip() + "\n")
            except (OSError, ValueError):
                self.proc = None

    def close(self) -> None:
        """The worker ends cleanly: nothing runs any more, the guard exits on end-of-file."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()


def main() -> None:
    """Read ``start|end|docker TASK ATTEMPT [NAME]`` lines until end-of-file, then end what runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the worker must not end its guard
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ended by the pipe only (its worker's death or exit)
    runs: dict[tuple[str, str], str | None] = {}
    for line in sys.stdin:
        parts = line.split()
        if len(parts) < 3:
            continue
        op, key = parts[0], (parts[1], parts[2])
        if op == "start":
            runs[key] = None
        elif op == "docker" and len(parts) > 3:
            runs[key] = parts[3]
        elif op == "end":
            runs.pop(key, None)
    for (task_id, attempt), _ in runs.items():
        kill_task(task_id, int(attempt))
    remove_containers([name for name in runs.values() if name])
    if runs:
        print(f"trainyard guard: ended {len(runs)} task(s) of a worker that died", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
