"""conda mode: the task runs on this host in a cached conda environment (conda, mamba or micromamba)."""

from ._environment import EnvironmentMode

MODE = EnvironmentMode("conda", "CONDA_PREFIX")
