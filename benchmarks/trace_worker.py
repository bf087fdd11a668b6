"""Run ``trainyard worker`` with a timestamp at each stage of its dispatch path; optionally cProfile it.

Used by ``bench_dispatch.py --profile``; can be run by hand::

    python benchmarks/trace_worker.py --trace trace.jsonl [--cprofile worker.pstats] worker -q bench --cpu-only

Nothing in trainyard is changed on disk: a few of its functions are wrapped in this process
before the CLI starts. Each stage a task passes appends ``{"task", "stage", "t"}`` (``time.time()``)
to the ``--trace`` file. ``--cprofile`` profiles every thread (the main loop, the event listener,
the task threads), each with its own ``cProfile.Profile`` (Python < 3.12: cProfile hooks one
thread only), and writes their merged stats there when the worker exits (SIGTERM drains it).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from trainyard.cli import cli
from trainyard.queues.dispatch import Dispatcher
from trainyard.worker import executor, process
from trainyard.worker.agent import Worker
from trainyard.worker.executor import TaskRun


class Trace:
    def __init__(self, path: str):
        self._out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._lock = threading.Lock()

    def mark(self, task_id: str, stage: str, t: float | None = None) -> None:
        line = json.dumps({"task": task_id, "stage": stage, "t": time.time() if t is None else t})
        with self._lock:
            self._out.write(line + "\n")


def wrap(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` (a function, method or class) with ``make(original)``; a name this
    version of trainyard lacks is left out (its stage is then missing from the trace)."""
    original = getattr(owner, name, None)
    if original is None:
        print(f"trace_worker: {getattr(owner, '__name__', owner)}.{name} not found, not traced", file=sys.stderr)
        return
    setattr(owner, name, make(original))


def install(trace: Trace) -> None:
    mark = trace.mark

    def on_event(original):
        def traced(self, event):
            if event.status == "queued" and event.task_id:
                mark(event.task_id, "event_seen")
            return original(self, event)

        return traced

    def claim(original):
        def traced(self, queues):
            begin = time.time()
            claimed = original(self, queues)
            if claimed is not None:
                mark(claimed.task_id, "claim_begin", begin)
                mark(claimed.task_id, "claim_end")
            return claimed

        return traced

    def after(stage: str, task_id_of: Callable[..., str]):
        def make(original):
            def traced(*args, **kwargs):
                result = original(*args, **kwargs)
                mark(task_id_of(*args, **kwargs), stage)
                return result

            return traced

        return make

    def before(stage: str, task_id_of: Callable[..., str]):
        def make(original):
            def traced(*args, **kwargs):
                mark(task_id_of(*args, **kwargs), stage)
                return original(*args, **kwargs)

            return traced

        return make

    def spawn(original):
        def traced(argv, cwd, env):
            task_id = env.get("TRAINYARD_TASK_ID", "")
            mark(task_id, "spawn_begin")
            proc = original(argv, cwd, env)
            mark(task_id, "spawn_end")
            return proc

        return traced

    wrap(Worker, "_on_event", on_event)
    wrap(Dispatcher, "claim", claim)
    wrap(Dispatcher, "start", after("start_end", lambda self, claimed, gpus: claimed.task_id))
    wrap(Dispatcher, "set_pgid", after("set_pgid_end", lambda self, task_id, pgid: task_id))
    wrap(TaskRun, "run", before("run_begin", lambda self: self.record.id))
    wrap(executor, "create_run_folder", after("run_folder_end", lambda path, task: task["id"]))
    wrap(executor, "Reporter", after("reporter_end", lambda conn, task_id, *rest: task_id))
    # _execute is called with the launch spec as soon as the worker's prepare step returned it.
    wrap(TaskRun, "_execute", before("prepare_end", lambda self, spec, reporter: self.record.id))
    wrap(process, "spawn", spawn)


class ThreadProfiles:
    """One cProfile.Profile per thread: the main one now, every new thread as it starts."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _new(self) -> cProfile.Profile:
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()
        return profile

    def start(self) -> None:
        if sys.version_info >= (3, 12):  # cProfile sits on sys.monitoring: one per process
            raise SystemExit("--cprofile needs Python < 3.12 (per-thread profilers)")

        def first_call(frame, event, arg):  # the profile hook of a new thread, replaced at once
            self._new()

        threading.setprofile(first_call)
        self._main = self._new()

    def save(self, path: str) -> None:
        threading.setprofile(None)
        self._main.disable()
        with self._lock:
            profiles = list(self.profiles)
        stats = None
        for profile in profiles:
            try:
                one = pstats.Stats(profile)
            except TypeError:  # a profile that recorded nothing
                continue
            if stats is None:
                stats = one
            else:
                stats.add(one)
        if stats is not None:
            stats.dump_stats(path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("worker") if "worker" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", required=True, help="JSON-lines file the stage timestamps are appended to")
    parser.add_argument("--cprofile", help="write the merged cProfile stats of every thread here at exit")
    args = parser.parse_args(argv[:split])
    install(Trace(args.trace))
    profiles = ThreadProfiles() if args.cprofile else None
    if profiles is not None:
        profiles.start()
    try:
        cli.main(args=argv[split:], prog_name="trainyard", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    finally:
        if profiles is not None:
            profiles.save(args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
