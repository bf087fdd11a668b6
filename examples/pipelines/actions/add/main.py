"""Inputs arrive as INPUT_<NAME> variables (and as one JSON argument); outputs go to $TRAINYARD_OUTPUT."""

import json
import os
import sys

inputs = json.loads(sys.argv[1])
a, b = float(os.environ["INPUT_A"]), float(os.environ["INPUT_B"])
assert (a, b) == (inputs["a"], inputs["b"])
total = a + b
print(f"add: {a:g} + {b:g} = {total:g}")
with open(os.environ["TRAINYARD_OUTPUT"], "a") as out:
    out.write(f"sum={json.dumps(total)}\n")
