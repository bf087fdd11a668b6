"""Pipeline files (YAML or JSON): jobs of steps, reusable actions, ``${{ }}`` templates, triggers.

Stable entry points (the web editor and the CLI use them):

* ``validate_text(text, filename) -> list[FileError]`` ([] when valid; nothing stored or run)
* ``load_text(text, filename) -> PipelineFile`` (raises PipelineFileError listing FileErrors)
* ``load_file(path) -> PipelineFile``
"""

from .check import load_file, load_text, validate_text
from .errors import FileError, PipelineFileError
from .schema import PipelineFile, json_schema

__all__ = ["FileError", "PipelineFile", "PipelineFileError", "json_schema", "load_file", "load_text", "validate_text"]
