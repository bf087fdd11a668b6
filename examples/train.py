"""A tiny "training" script: reads its hyper-parameters, prints progress, reports a result.

Run it by hand (`python examples/train.py --lr 0.1 --epochs 3`) or as a trainyard task: the
worker passes the task's ``Args/`` parameters as command-line flags.
"""

import argparse
import math


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    loss = 1.0
    for epoch in range(args.epochs):
        loss = loss * math.exp(-args.lr) + 0.01 * args.batch_size / 32
        print(f"epoch {epoch} loss {loss:.4f}", flush=True)
    print(f"final loss {loss:.4f}")


if __name__ == "__main__":
    main()
