"""Step 2: read the dataset by its artifact URL (a flag), scale it, store the result."""

import argparse
import json
import tempfile
from pathlib import Path

from trainyard import current_task

parser = argparse.ArgumentParser()
parser.add_argument("--dataset", required=True, help="URL (path) of the dataset artifact")
parser.add_argument("--scale", type=float, default=1.0)
args = parser.parse_args()
data = json.loads(Path(args.dataset).read_text())
scaled = [[x * args.scale for x in row] for row in data]
path = Path(tempfile.mkdtemp()) / "processed.json"
path.write_text(json.dumps(scaled))
task = current_task()
task.upload_artifact("processed", path)
print(f"process: scaled {len(scaled)} rows by {args.scale}")
