"""What dead workers left on this host: their task processes and containers, ended by a live worker.

At start a worker ends what dead workers of its home left behind (``end_dead_workers_leftovers``);
after the reaper settled tasks of a dead worker of this host, their processes and containers
(``clean_up_after``). A newer attempt of the same task, run by a live worker, is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import psutil
from redis import Redis

from ..queues.backend import fleet
from ..queues.reaper import Reaped
from . import guard

log = logging.getLogger("trainyard.worker")


def end_dead_workers_leftovers(conn: Redis, own_name: str, host: str, runs_dir: Path) -> None:
    """End processes that name a dead worker in their environment (``TRAINYARD_WORKER``; a
    predecessor under ``own_name`` is dead too) and run under ``runs_dir``, and, apart from this
    thread, their containers."""
    started = time.time()
    runs = str(runs_dir) + os.sep
    found = [
        marks
        for _, marks in guard.task_processes()
        if marks.get("TRAINYARD_WORKER") and marks.get("TRAINYARD_RUN_DIR", "").startswith(runs)
    ]
    known: dict[str, bool] = {own_name: False}

    def alive(name: str) -> bool:
        """A registry entry, and (for a worker of this host) its process: a worker killed moments
        ago keeps its entry until it expires."""
        if name not in known:
            entry = fleet.worker_entry(conn, name)
            try:
                facts = json.loads(entry) if entry else None
            except ValueError:
                facts = {}
            known[name] = facts is not None and (
                facts.get("host") != host or _process_alive(int(facts.get("pid") or 0))
            )
        return known[name]

    for marks in found:
        if not alive(marks["TRAINYARD_WORKER"]):
            task_id, attempt = marks.get("TRAINYARD_TASK_ID", ""), marks.get("TRAINYARD_ATTEMPT")
            log.warning("ending task %s (attempt %s) of dead worker %s", task_id, attempt, marks["TRAINYARD_WORKER"])
            guard.kill_task(task_id, int(attempt) if attempt and attempt.isdigit() else None)

    def containers() -> None:
        from .containers import remove_containers_of

        try:
            removed = remove_containers_of(runs.rstrip(os.sep), lambda name: bool(name) and not alive(name), started)
        except Exception:  # noqa: BLE001 - best effort, logged
            log.exception("removing containers of dead workers failed")
            return
        if removed:
            log.warning("removed %d container(s) of dead workers", removed)

    # not a daemon: a worker that exits meanwhile (--burst) still finishes the clean-up
    threading.Thread(target=containers, name="leftover-containers", daemon=False).start()


def clean_up_after(reaped: list[Reaped], own_name: str) -> None:
    """End what dead workers on this host left: the processes and containers of the reaped tasks
    that name the dead worker (a newer attempt of the same task, run by a live worker, stays)."""
    dead = {(d.task_id, d.worker) for d in reaped if d.worker != own_name}  # a same-name predecessor: at start
    try:
        guard.kill_matching(lambda m: (m.get("TRAINYARD_TASK_ID"), m.get("TRAINYARD_WORKER")) in dead)
        from .containers import remove_task_containers

        remove_task_containers(dead)  # any task may have run in docker mode
    except Exception:  # noqa: BLE001 - best effort, logged
        log.exception("cleaning up after a dead worker failed")


def _process_alive(pid: int) -> bool:
    try:
        return pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
