"""Many real workers in one process: the simulated hosts of ``bench_fleet.py``.

Run by the benchmark (``python benchmarks/fleet_sim.py --count 500 --prefix sim-a --queue bench``,
``TRAINYARD_REDIS_URL`` set). Each simulated worker is the real ``trainyard.worker.agent.Worker``
with its own Redis client (``use_client`` and ``client_for``, as a worker process gets: named, at
most two connections), run on threads: the same blocking wait on its inbox and its queue's bell,
the same claim and start scripts, heartbeat, reaper turn and task launch. Left out, none of which
talks to Redis: the guard process each worker starts beside itself (a thousand bare interpreters
do not fit one small machine), the start-up sweep of /proc and Docker for what dead workers left,
and a fence thread per worker (one thread runs every worker's fence check). SIGTERM stops every
worker (its task, if any, goes back to its queue) and the process exits once all have unregistered.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, run as a script

from trainyard.connection import client_for, use_client  # noqa: E402
from trainyard.worker.agent import CONNECTIONS, Worker, WorkerConfig, fence_after_s  # noqa: E402

SPREAD_S = 25.0  # starts spread over one backstop period: the workers' timers do not run out together


class SimWorker(Worker):
    """A worker without its guard process and start-up sweep (see the module docstring)."""

    def _start_guard(self):
        return None

    def _end_leftovers(self) -> None:
        return None

    def _fence_loop(self) -> None:
        return None  # one thread runs every worker's fence_silent_runs (see fence_all)


def fence_all(agents: list[Worker], stopped: threading.Event) -> None:
    """The fence watchdog of every simulated worker, on one thread (each worker would wake its own
    four times a second: four thousand wake-ups a second for a thousand workers, none of them
    talking to Redis)."""
    while not stopped.wait(min(0.25, fence_after_s() / 4)):
        for agent in agents:
            agent.fence_silent_runs()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", required=True, help="worker names are <prefix>-<i>")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--spread-s", type=float, default=SPREAD_S, help="start the workers over this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    url = os.environ["TRAINYARD_REDIS_URL"]
    home = Path(os.environ["TRAINYARD_HOME"])
    agents = []
    for i in range(args.count):
        name = f"{args.prefix}-{i}"
        use_client(f"trainyard-worker:{name}", max_connections=CONNECTIONS)  # as `trainyard worker` does
        config = WorkerConfig(queues=[args.queue], name=name, home=home, redis_url=url)
        agents.append(SimWorker(client_for(url), config))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    threads = []
    for agent in agents:
        thread = threading.Thread(target=agent.run, name=agent.name, daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(args.spread_s / len(agents))
    threading.Thread(target=fence_all, args=(agents, stopped), name="fence", daemon=True).start()
    print(f"started {len(agents)} workers", flush=True)
    stopped.wait()
    for agent in agents:
        agent.stop()
    for thread in threads:
        thread.join(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
