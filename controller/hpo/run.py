"""Entry point of an optimiser's controller task: ``python -m trainyard.controller.hpo.run [STUDY_ID]``.

A services worker runs it; the study id defaults to the task's own id (``TRAINYARD_TASK_ID``).
Started again (its worker died and the task was re-queued) it resumes the study. SIGTERM (abort of
the controller task) stops the study: running trials are aborted.
"""

from __future__ import annotations

import signal
import sys

from ...queues import config
from ...queues.connection import default_connection
from ...queues.errors import TrainyardError
from ..engine import import_callable
from .engine import Detached, StudyController


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    study_id = argv[0] if argv else config.current().task_id
    if not study_id:
        print("usage: python -m trainyard.controller.hpo.run STUDY_ID", file=sys.stderr)
        return 2
    conn = default_connection()
    try:
        controller = StudyController(conn, study_id)
        if controller.doc.callback:
            controller.callback = import_callable(controller.doc.callback)
    except (TrainyardError, ImportError, AttributeError) as exc:
        print(f"study {study_id}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: controller.term_event.set())
    doc = controller.doc
    print(f"study {doc.name} ({study_id}): {doc.strategy}, {doc.total_max_jobs} trials, {doc.max_concurrent} at once")
    try:
        result = controller.execute()
    except Detached as exc:
        print(f"study {study_id}: {exc}; its trials keep running", flush=True)
        return 1
    best = result.best
    print(f"study {result.status}: {result.message or ''}".rstrip(), flush=True)
    if best:
        print(f"best: trial {best['number']} (task {best['task']}) value {best['value']} {best['params']}", flush=True)
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
