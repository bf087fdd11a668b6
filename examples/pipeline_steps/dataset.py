"""Step 1: make a tiny dataset and store it as an artifact."""

import json
import random
import tempfile
from pathlib import Path

from trainyard import current_task

task = current_task()
rows = task.get_parameter("Args/rows", 100)
rng = random.Random(task.get_parameter("Args/seed", 0))
data = [[rng.random(), rng.random()] for _ in range(rows)]
path = Path(tempfile.mkdtemp()) / "dataset.json"
path.write_text(json.dumps(data))
task.upload_artifact("dataset", path)
task.set_output("rows", rows)
print(f"dataset: {rows} rows")
