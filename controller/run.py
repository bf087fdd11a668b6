"""Entry point of a controller task: ``python -m trainyard.controller.run [RUN_ID]``.

A services worker runs it; the run id defaults to the task's own id (``TRAINYARD_TASK_ID``).
SIGTERM (abort of the controller task) stops the pipeline: its running steps are aborted.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback

from ..queues import config
from ..queues.connection import default_connection
from .engine import Controller
from .render import summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_id = argv[0] if argv else config.current().task_id
    if not run_id:
        print("usage: python -m trainyard.controller.run RUN_ID", file=sys.stderr)
        return 2
    controller = Controller(default_connection(), run_id)
    signal.signal(signal.SIGTERM, lambda *_: controller.stop_event.set())
    print(f"pipeline {controller.run.name} (run {run_id}): {len(controller.run.steps)} steps", flush=True)
    try:
        run = controller.execute()
    except Exception as exc:  # a callback that cannot be imported, a bug: the run must not stay "running"
        reason = f"controller error: {last_line(exc)}"
        with contextlib.suppress(Exception):  # Redis gone as well: `pipeline abort` ends it later
            controller.end("failed", reason)
        traceback.print_exc()
        print(reason, file=sys.stderr, flush=True)  # the last line: the controller task's error
        return 1
    print(summary(run), flush=True)
    return 0 if run.status == "completed" else 1


def last_line(exc: BaseException) -> str:
    """``ModuleNotFoundError: No module named 'x'``: the exception as a traceback's last line shows it."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]


if __name__ == "__main__":
    sys.exit(main())
