"""A runaway task cannot fill Redis: huge logs, endless lines and floods of outputs, parameters and
metric series are capped (the whole log still goes to the artifact store)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from workerproc import WorkerProcess, wait_status

from trainyard import Queue, Task, TaskStatus
from trainyard.queues import keys, logs
from trainyard.worker import reporter

FLOOD = textwrap.dedent(
    """
    import sys
    from trainyard import current_task
    task = current_task()
    out = sys.stdout
    for i in range(25000):
        out.write(f"line {i} " + "x" * 90 + "\\n")
    out.write("y" * 3_000_000 + "\\n")  # one endless line
    out.flush()
    task.set_output("huge", "z" * 200_000)
    for i in range(400):
        task.set_output(f"out{i}", i)
    task.connect({f"p{i}": i for i in range(1500)}, name="Flood")
    for i in range(1200):
        task.log_metric("flood", f"s{i}", 1.0, step=0)
    print("done flooding", flush=True)
    """
)


def test_floods_are_capped(conn, tmp_path):
    Queue.create("cpu")
    script = tmp_path / "flood.py"
    script.write_text(FLOOD)
    task = Task.create("flood", script=script, detect_repository=False)
    task.enqueue("cpu")
    with WorkerProcess("-q", "cpu", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=180) == 0, worker.output()
    record = wait_status(task, TaskStatus.COMPLETED).data
    assert record.status == TaskStatus.COMPLETED, record.runtime.error
    # the log stream keeps about LOG_MAXLEN lines, each cut at MAX_LINE; the stored file has everything
    assert conn.xlen(keys.log(task.id)) <= logs.LOG_MAXLEN + 200
    assert max(len(line.text) for line in logs.tail(conn, task.id, 5000)) <= logs.MAX_LINE
    assert conn.memory_usage(keys.log(task.id)) < 8 * 1024 * 1024
    stored = Path(record.runtime.log_uri).read_text()
    assert "line 0 " in stored and stored.count("y") >= 3_000_000  # an endless line is stored in pieces
    # the record holds what fits, and says what it refused
    assert len(record.outputs) == reporter.MAX_OUTPUTS and "huge" not in record.outputs
    assert len([k for k in record.parameters if k.startswith("Flood/")]) <= reporter.MAX_PARAMETERS
    assert sum(len(series) for series in record.metrics.values()) <= reporter.MAX_SERIES
    assert len(conn.get(keys.task(task.id))) < 2 * 1024 * 1024
    text = "\n".join(line.text for line in logs.tail(conn, task.id, 50))
    assert "output report refused: a value of 200002 bytes (the limit is 65536)" in text
    assert "output report refused: more than 256 output names" in text
    assert "metric report refused: more than 1000 metric names" in text
    assert "done flooding" in text
