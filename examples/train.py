"""A tiny "training" script: reads its hyper-parameters, logs a loss curve, stores a model.

Run it by hand (`python examples/train.py --lr 0.1 --epochs 3`) or as a trainyard task: the
worker passes the task's ``Args/`` parameters as flags, and ``current_task()`` forwards metrics,
outputs and artifacts. Outside a worker the same calls work offline and report nothing.
"""

import argparse
import json
import math
import tempfile
from pathlib import Path

from trainyard import current_task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    task = current_task()
    loss = 1.0
    for epoch in range(args.epochs):
        loss = loss * math.exp(-args.lr) + 0.01 * args.batch_size / 32
        task.log_metric("loss", "train", loss, step=epoch)
        print(f"epoch {epoch} loss {loss:.4f}", flush=True)
    model = Path(tempfile.mkdtemp()) / "model.json"
    model.write_text(json.dumps({"lr": args.lr, "loss": loss}))
    task.upload_artifact("model", model)
    task.set_output("final_loss", round(loss, 4))
    print(f"final loss {loss:.4f}")


if __name__ == "__main__":
    main()
