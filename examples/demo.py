"""The trainyard demo: two queues, a worker, tasks run by priority, logs and metrics shown.

    pip install -e . && python examples/demo.py

Runs on the embedded Redis (started on first use; `trainyard down` stops it) unless
TRAINYARD_REDIS_URL points elsewhere. Everything it makes lives in project "demo".
"""

import subprocess
import sys
from pathlib import Path

from trainyard import Queue, Task
from trainyard.queues import logs

HERE = Path(__file__).resolve().parent


def main() -> int:
    for name in ("demo-urgent", "demo-batch"):
        Queue.create(name, exist_ok=True)
    template = Task.create(
        "train",
        "demo",
        script=HERE / "train.py",
        detect_repository=False,
        parameters={"Args/lr": 0.1, "Args/epochs": 4},
    )
    print(f"template task {template.id}: {template.data.script.entry_point}")

    plan = [("demo-batch", 0.01, 0), ("demo-batch", 0.05, 5), ("demo-urgent", 0.5, 0), ("demo-batch", 0.1, 0)]
    for queue, lr, priority in plan:
        clone = template.clone(name=f"train lr={lr}", parameters={"Args/lr": lr})
        clone.enqueue(queue, priority=priority)
        print(f"  {clone.id} {clone.name:<14} -> {queue} (priority {priority})")

    print("\nstarting a worker on demo-urgent, then demo-batch (strict order); it exits when both are empty\n")
    worker = subprocess.run(
        [sys.executable, "-m", "trainyard", "worker", "-q", "demo-urgent", "-q", "demo-batch", "--cpu-only", "--burst"],
        stderr=subprocess.DEVNULL,
    )
    if worker.returncode != 0:
        print(f"worker exited with {worker.returncode}")
        return 1

    runs = [t for t in Task.list(project="demo", parent=template.id, limit=len(plan))]
    runs.sort(key=lambda t: t.data.started or 0)
    print(f"{'#':<3}{'task':<18}{'name':<16}{'queue':<13}{'status':<11}{'final loss':<11}")
    for i, task in enumerate(runs):
        r = task.data
        print(
            f"{i:<3}{r.id:<18}{r.name:<16}{r.execution.queue:<13}{r.status.value:<11}"
            f"{r.outputs.get('final_loss', '')!s:<11}"
        )
    first = runs[0]
    print(f"\nlog of {first.id} ({first.name}):")
    for line in logs.read(first.connection, first.id):
        print(f"  {line.text}")
    curve = first.metrics["loss"]["train"]
    print(
        f"metric loss/train: last {curve.last:.4f}, min {curve.min:.4f}, {curve.count} points; "
        f"artifact model at {first.artifacts['model'].uri}"
    )
    print("\nmore: trainyard task list --project demo | trainyard queue list | trainyard task show ID")
    return 0 if all(t.status.value == "completed" for t in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
