"""Clone, edit, enqueue: the ClearML "programmatic orchestration" pattern with trainyard.

A template task is created from ``train.py`` (its git checkout is recorded when there is one),
then cloned once per learning rate with the parameter overridden, and each clone is enqueued.

    python examples/sweep.py [--queue sweep] [--lrs 0.3 0.1 0.03]
"""

import argparse
from pathlib import Path

from trainyard import Queue, Task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", default="sweep")
    parser.add_argument("--project", default="examples")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.3, 0.1, 0.03])
    args = parser.parse_args()

    Queue.create(args.queue, exist_ok=True)
    template = Task.create(
        "train-template",
        args.project,
        script=Path(__file__).with_name("train.py"),
        parameters={"Args/lr": 0.1, "Args/epochs": 3, "Args/batch-size": 32},
    )
    print(f"template {template.id} ({template.data.script.entry_point})")

    for lr in args.lrs:
        clone = template.clone(name=f"train lr={lr}", parameters={"Args/lr": lr})
        clone.enqueue(args.queue, priority=1 if lr >= 0.1 else 0)  # try the big steps first
        print(f"  enqueued {clone.id} {clone.name} Args/lr={clone.get_parameter('Args/lr')!r}")

    print(f"\nqueue {args.queue}, in the order workers will take it:")
    for entry, record in Queue(args.queue).tasks():
        print(f"  #{entry.position} {entry.task_id} {record.name} priority={entry.priority}")


if __name__ == "__main__":
    main()
