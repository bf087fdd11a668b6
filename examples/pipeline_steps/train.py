"""Step 3: "train" on the processed data; typed parameters arrive typed."""

import argparse
import json
from pathlib import Path

from trainyard import current_task

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()
rows = json.loads(Path(args.data).read_text())
task = current_task()
loss = 1.0
for epoch in range(args.epochs):
    loss *= 1 - args.lr * min(1.0, len(rows) / 100)
    task.log_metric("loss", "train", loss, step=epoch)
task.set_output("loss", round(loss, 5))
print(f"train: {len(rows)} rows, lr {args.lr} ({type(task.get_parameter('Args/lr')).__name__}), loss {loss:.4f}")
