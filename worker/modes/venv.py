"""venv mode: the task runs on this host in a cached virtualenv built from its requirements."""

from ._environment import EnvironmentMode

MODE = EnvironmentMode("venv", "VIRTUAL_ENV")
