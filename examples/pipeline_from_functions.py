"""A pipeline from Python functions (ClearML's second style): each function becomes a task.

Return values are stored as the step's outputs and passed on with ${step.return_name}
references, typed. The functions must be module-level; their module's imports go with them.

    python examples/pipeline_from_functions.py
"""

import statistics

from trainyard import Pipeline
from trainyard.controller.render import summary


def make_numbers(count: int, start: float) -> list:
    return [start + i * 0.5 for i in range(count)]


def describe(numbers: list) -> tuple:
    return statistics.mean(numbers), max(numbers)


def report(mean: float, peak: float, label: str) -> str:
    line = f"{label}: mean {mean:.2f}, peak {peak:.2f}"
    print(line)
    return line


def main() -> int:
    pipe = Pipeline("functions-pipeline", project="examples", default_queue="cpu")
    pipe.add_parameter("count", 6)
    pipe.add_function_step(
        "numbers", make_numbers, kwargs={"count": "${pipeline.count}", "start": 1.0}, returns=["numbers"], cache=True
    )
    pipe.add_function_step("stats", describe, kwargs={"numbers": "${numbers.numbers}"}, returns=["mean", "peak"])
    pipe.add_function_step(
        "report",
        report,
        kwargs={"mean": "${stats.mean}", "peak": "${stats.peak}", "label": "numbers"},
        returns=["line"],
    )
    run = pipe.start_locally(run_steps_locally=True)
    print(summary(run))
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
