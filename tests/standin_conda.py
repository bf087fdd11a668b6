#!/usr/bin/env python
"""A STAND-IN FOR CONDA, for tests only: it is not conda and installs no conda package.

Conda, mamba and micromamba cannot be installed on the machine these tests were written on
(only PyPI is reachable), so conda mode is tested against this script. It understands one
command, the one trainyard's worker runs:

    standin_conda.py create -y -p PREFIX python=3.11 pkgA pkgB

and makes PREFIX a virtualenv of the interpreter running it (with the ``virtualenv`` package),
so that ``PREFIX/bin/python -m pip`` works as in a real conda env. The conda packages asked for
are only recorded, in ``PREFIX/conda-meta/standin-packages.json``. Unknown commands or a
missing ``-p`` exit with status 2 and a message, as conda's argument errors do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="standin-conda", description="stand-in for `conda create` (tests only)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="create an environment at a prefix")
    create.add_argument("-y", "--yes", action="store_true")
    create.add_argument("-p", "--prefix", required=True)
    create.add_argument("specs", nargs="*", help="python=X.Y and conda package specs")
    return parser.parse_args(argv)


def create(prefix: Path, specs: list[str]) -> int:
    """Make ``prefix`` a virtualenv of this interpreter and record the package specs."""
    python = next((s.split("=", 1)[1] for s in specs if s.startswith("python=")), None)
    packages = [s for s in specs if not s.startswith("python=")]
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python is not None and python != own:
        print(f"standin-conda: python={python} requested; only python {own} is available here", file=sys.stderr)
        return 1
    print("Collecting package metadata (stand-in): done", flush=True)
    print(f"Creating environment at {prefix} with python {own}", flush=True)
    import virtualenv  # the package trainyard itself depends on

    virtualenv.cli_run([str(prefix), "--python", sys.executable, "--quiet"])
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    record = {"python": python, "packages": packages, "cuda_override": os.environ.get("CONDA_OVERRIDE_CUDA")}
    (meta / "standin-packages.json").write_text(json.dumps(record, indent=1))
    for package in packages:
        print(f"  recorded (not installed): {package}", flush=True)
    print("Executing transaction (stand-in): done", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    return create(Path(args.prefix).absolute(), args.specs)


if __name__ == "__main__":
    sys.exit(main())
