"""Errors in pipeline and action files: each names the file, the line (when known) and the field."""

from __future__ import annotations

from pydantic import BaseModel

from ...queues.errors import InvalidInput


class FileError(BaseModel):
    """One problem in a file. ``field`` is a dotted path such as ``jobs.train.steps[1].inputs.lr``."""

    file: str
    line: int | None = None
    field: str = ""
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PipelineFileError(InvalidInput):
    """A file that cannot be used; ``errors`` lists every problem found (the message shows them all)."""

    def __init__(self, errors: list[FileError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid pipeline file")


def field_path(parts: tuple) -> str:
    """``("jobs", "a", "steps", 0, "run")`` -> ``jobs.a.steps[0].run``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
