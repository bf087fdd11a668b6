"""Pipeline files (YAML or JSON): jobs of steps, reusable actions, ``${{ }}`` templates, triggers.

Stable entry points (the web editor and the CLI use them):

* ``validate_text(text, filename) -> list[FileError]`` ([] when valid; nothing stored or run)
* ``load_text(text, filename) -> PipelineFile`` (raises PipelineFileError listing FileErrors)
* ``load_file(path) -> PipelineFile``
* ``submit(pipeline_file, params, conn=None) -> run_id`` (registers it, starts a run on the workers)
* ``trigger(name, inputs, conn=None) -> run_id`` (a registered file's manual trigger)
* ``run_here(pipeline_file, params, inputs) -> PipelineRun`` (in this process, jobs on a local worker)
* ``register(pipeline_file)``, ``registered() -> list[dict]``, ``find(name)``, ``unregister(name)``
"""

from .check import load_file, load_text, validate_text
from .errors import FileError, PipelineFileError
from .registry import entries as registered
from .registry import find, register, run_here, submit, trigger, unregister
from .schema import PipelineFile, json_schema

__all__ = [
    "FileError",
    "PipelineFile",
    "PipelineFileError",
    "json_schema",
    "load_file",
    "load_text",
    "find",
    "register",
    "registered",
    "run_here",
    "submit",
    "trigger",
    "unregister",
    "validate_text",
]
