"""A stand-in for DataTorch's ``datatorch`` client inside actions (standard library only, Python 3.8+).

The job runner puts this folder first on a DataTorch action's path (before anything installed),
so actions written for DataTorch read their inputs and write their outputs without DataTorch's
client: ``get_inputs()``, ``get_input(key)``, ``set_output(name, value)``, ``agent.directories()``,
``utils.files.mkdir_exists``, ``BASE_URL``. Everything else (``ApiClient`` and the
``datatorch.api`` entities) needs DataTorch's web service: using it ends the action with one line
naming the call.
"""

import importlib.abc
import importlib.machinery
import json
import os
import sys
import types

BASE_URL = "https://datatorch.io"
BASE_URL_API = "https://datatorch.io/api"
__path__ = []  # a package: its submodules come from the finder below

_inputs = None


def get_inputs() -> dict:
    """The step's inputs (the JSON the runner passes as the last argument)."""
    global _inputs
    if _inputs is None:
        try:
            value = json.loads(sys.argv[-1]) if len(sys.argv) > 1 else {}
        except ValueError:
            value = {}
        _inputs = value if isinstance(value, dict) else {}
    return _inputs


def get_input(key: str):
    return get_inputs().get(key)


def set_output(name: str, value) -> None:
    """An output of the step (``::name::<json>``), readable by later steps."""
    print("::" + name + "::" + json.dumps(value), flush=True)


def _web_only(what: str):
    raise SystemExit(
        "datatorch: " + what + " needs DataTorch's web service, which trainyard does not have "
        "(only get_inputs, get_input, set_output, agent.directories and utils.files work here)"
    )


class _WebOnly:
    """Anything of DataTorch's client that talks to its web service: using it ends the action."""

    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        _web_only(self._name + "()")

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        _web_only(self._name + "." + attr)


class ApiClient:
    """DataTorch's API client: constructing it works, every call ends the action with one line."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _WebOnly("datatorch.ApiClient()." + attr)


class _Directories:
    def __init__(self):
        run = os.environ.get("TRAINYARD_RUN_DIR") or os.getcwd()
        self.root = run
        self.actions = os.environ.get("TRAINYARD_ACTION_PATH") or run
        self.temp = os.path.join(run, "tmp")
        self.logs = os.path.join(run, "logs")


def directories() -> _Directories:
    """DataTorch's agent folders, mapped onto the job's run folder."""
    return _Directories()


def mkdir_exists(path: str) -> None:
    os.makedirs(path, exist_ok=True)


_PROVIDED = {
    "datatorch.agent": {"directories": directories},
    "datatorch.api": {"ApiClient": ApiClient},
    "datatorch.api.api": {"ApiClient": ApiClient},
    "datatorch.api.client": {"ApiClient": ApiClient},
    "datatorch.core": {"BASE_URL": BASE_URL, "BASE_URL_API": BASE_URL_API},
    "datatorch.utils": {},
    "datatorch.utils.files": {"mkdir_exists": mkdir_exists},
}


class _Submodule(types.ModuleType):
    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _WebOnly(self.__name__ + "." + attr)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves every ``datatorch.*`` module: the provided functions, web-only stand-ins for the rest."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Submodule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        for attr, value in _PROVIDED.get(module.__name__.replace(__name__, "datatorch", 1), {}).items():
            setattr(module, attr, value)


sys.meta_path.insert(0, _Finder())
agent = types.SimpleNamespace(directories=directories)
