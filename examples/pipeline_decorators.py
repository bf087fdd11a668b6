"""A pipeline from decorators (ClearML's third style), with a fan-out in a plain Python loop.

python examples/pipeline_decorators.py            # steps as tasks, run in this process
python examples/pipeline_decorators.py --debug    # plain function calls, no tasks
"""

import argparse

from trainyard import component, pipeline


@component(returns=["shard"], cache=True)
def make_shard(index: int, size: int) -> list:
    return [index * size + i for i in range(size)]


@component(returns=["total"])
def shard_sum(shard: list) -> int:
    return sum(shard)


@component(returns=["grand_total"])
def combine(totals: list) -> int:
    print("shard totals:", totals)
    return sum(totals)


@pipeline(name="fan-out", project="examples", default_queue="cpu")
def fan_out(shards: int = 4, size: int = 5):
    totals = [shard_sum(shard=make_shard(index=i, size=size)) for i in range(shards)]
    return combine(totals=totals)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--debug", action="store_true", help="run the functions inline, without tasks")
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    if args.debug:
        print("grand total:", fan_out.debug(shards=args.shards))
        return 0
    from trainyard import Task
    from trainyard.controller.render import summary

    run = fan_out.run_locally(shards=args.shards)
    print(summary(run))
    if run.status == "completed":
        print("grand total:", Task.get(run.state["combine"].task_id).outputs["grand_total"])
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
