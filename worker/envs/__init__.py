"""Per-task Python environments, built once per host and cached by content.

* ``spec.py`` — what defines an environment (``EnvSpec``), its key, the builders by kind
* ``cache.py`` — the generic cache: locked builds, in-use leases, LRU eviction
* ``venv.py``, ``conda.py`` — the builders (a new kind of environment is one more builder file)
* ``tools.py`` — the Pythons, uv and conda tools found on this host
"""

from . import conda, venv  # noqa: F401  (they register their builders)
from .cache import METADATA, EnvCache
from .spec import BuiltEnv, EnvSpec, InstallError, env_key, installer_family, last_lines

__all__ = ["METADATA", "BuiltEnv", "EnvCache", "EnvSpec", "InstallError", "env_key", "installer_family", "last_lines"]
