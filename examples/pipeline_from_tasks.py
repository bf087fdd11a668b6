"""A pipeline from template tasks (ClearML's first style): dataset -> process -> train.

Three draft "template" tasks are created from the scripts in pipeline_steps/; the pipeline
clones each one, overrides parameters — passing the dataset's artifact URL to the next step
with a ${...} reference — and runs them in order.

    python examples/pipeline_from_tasks.py               # controller and steps in this process
    python examples/pipeline_from_tasks.py --queue services --step-queue cpu
                                                          # controller on a services worker, steps on workers
"""

import argparse
from pathlib import Path

from trainyard import Pipeline, Queue, Task
from trainyard.controller.render import summary

STEPS = Path(__file__).resolve().parent / "pipeline_steps"


def templates(project: str) -> dict:
    """The template tasks: drafts with default parameters (created once, reused by name)."""
    defaults = {
        "dataset": {"Args/rows": 100, "Args/seed": 0},
        "process": {"Args/dataset": "", "Args/scale": 1.0},
        "train": {"Args/data": "", "Args/lr": 0.1, "Args/epochs": 2},
    }
    out = {}
    for name, params in defaults.items():
        out[name] = Task.create(name, project, script=STEPS / f"{name}.py", detect_repository=False, parameters=params)
    return out


def build(project: str, step_queue: str) -> Pipeline:
    templates(project)
    pipe = Pipeline("tasks-pipeline", project=project, version="1.0.0", default_queue=step_queue)
    pipe.add_parameter("lr", 0.3)
    pipe.add_step("dataset", base_task=f"{project}/dataset", parameter_override={"Args/rows": 200}, cache=True)
    pipe.add_step(
        "process",
        base_task=f"{project}/process",
        parameter_override={"Args/dataset": "${dataset.artifacts.dataset.url}", "Args/scale": 2.0},
    )
    pipe.add_step(
        "train",
        base_task=f"{project}/train",
        parameter_override={
            "Args/data": "${process.artifacts.processed.url}",
            "Args/lr": "${pipeline.lr}",
            "Args/epochs": 3,
        },
    )
    return pipe


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", default="examples")
    parser.add_argument("--queue", help="run the controller on this services queue (default: in this process)")
    parser.add_argument("--step-queue", default="cpu", help="queue for the steps when --queue is given")
    args = parser.parse_args()
    if args.queue:
        Queue.create(args.step_queue, exist_ok=True)
        pipe = build(args.project, args.step_queue)
        pipe.start(queue=args.queue)
        print(f"started run {pipe.run_id}; follow it with: trainyard pipeline show {pipe.run_id}")
        run = pipe.wait()
    else:
        pipe = build(args.project, "cpu")
        run = pipe.start_locally(run_steps_locally=True)
    print(summary(run))
    print("train loss:", Task.get(run.state["train"].task_id).outputs.get("loss"))
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
