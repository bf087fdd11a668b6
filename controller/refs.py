"""``${...}`` references between pipeline steps, resolved typed when a step launches.

    ${pipeline.lr}                    a pipeline parameter
    ${prep.id}                        the task id of step ``prep``
    ${prep.parameters.Args/lr}        one of its parameters (typed)
    ${prep.artifacts.dataset.url}     an artifact field: url (= uri), sha256, size, name, content_type,
                                      or metadata.<key>; ``${prep.artifacts.dataset}`` means its url
    ${prep.outputs.rows}              an output (typed)
    ${prep.rows}                      a function step's return value (typed)

A string that is exactly one reference becomes the referenced value with its type; references
inside longer text are substituted as text. Lists and dicts are searched all the way down.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..queues.errors import InvalidInput
from ..queues.params import normalize_key
from ..queues.record import TaskRecord

PATTERN = re.compile(r"\$\{\s*([^{}\s]+)\s*\}")
ARTIFACT_FIELDS = ("url", "uri", "sha256", "size", "name", "content_type")


class ReferenceError_(InvalidInput):  # noqa: N801 - keeps clear of the builtin ReferenceError
    """A reference that cannot be resolved (the message names it)."""


@dataclass(frozen=True)
class Reference:
    text: str
    step: str
    path: tuple[str, ...]


def parse(inner: str, text: str | None = None) -> Reference:
    text = text or "${" + inner + "}"
    step, dot, rest = inner.partition(".")
    if not step or not dot or not rest:
        raise InvalidInput(f"bad reference {text}: expected ${{step.field}} or ${{pipeline.name}}")
    head, _, tail = rest.partition(".")
    if step == "pipeline":
        return Reference(text, step, (rest,))
    if head in ("parameters", "outputs"):
        if not tail:
            raise InvalidInput(f"bad reference {text}: {head} needs a name")
        return Reference(text, step, (head, tail))
    if head == "artifacts":
        if not tail:
            raise InvalidInput(f"bad reference {text}: artifacts needs a name")
        name, field = tail, "url"
        for candidate in (*ARTIFACT_FIELDS, "metadata"):
            if tail.endswith("." + candidate):
                name, field = tail[: -len(candidate) - 1], candidate
                break
        if ".metadata." in tail:
            name, _, key = tail.partition(".metadata.")
            return Reference(text, step, ("artifacts", name, "metadata", key))
        return Reference(text, step, ("artifacts", name, field))
    return Reference(text, step, tuple(rest.split(".", 1)) if head == "id" else (rest,))


def find_references(value: Any) -> Iterator[Reference]:
    """Every reference in a (nested) value."""
    if isinstance(value, str):
        for match in PATTERN.finditer(value):
            yield parse(match.group(1), match.group(0))
    elif isinstance(value, dict):
        for item in value.values():
            yield from find_references(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from find_references(item)


@dataclass
class Resolver:
    """Resolves references against pipeline parameters and the records of finished steps."""

    parameters: dict[str, Any]
    record: Callable[[str], TaskRecord]  # step name -> its (finished) task record

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = PATTERN.fullmatch(value.strip())
            if whole:
                return self.value(parse(whole.group(1), whole.group(0)))
            return PATTERN.sub(lambda m: _as_text(self.value(parse(m.group(1), m.group(0)))), value)
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def value(self, ref: Reference) -> Any:
        if ref.step == "pipeline":
            name = ref.path[0]
            if name not in self.parameters:
                raise ReferenceError_(f"{ref.text}: no pipeline parameter {name!r}")
            return self.parameters[name]
        record = self.record(ref.step)
        head = ref.path[0]
        if head == "id":
            return record.id
        if head == "status":
            return record.status.value
        if head == "parameters":
            key = normalize_key(ref.path[1])
            if key not in record.parameters:
                raise ReferenceError_(f"{ref.text}: step {ref.step!r} has no parameter {key!r}")
            return record.parameters[key]
        if head == "artifacts":
            return self._artifact(ref, record)
        name = ref.path[1] if head == "outputs" else head
        if name not in record.outputs:
            raise ReferenceError_(f"{ref.text}: step {ref.step!r} (task {record.id}) did not output {name!r}")
        return record.outputs[name]

    @staticmethod
    def _artifact(ref: Reference, record: TaskRecord) -> Any:
        name, field = ref.path[1], ref.path[2]
        artifact = record.artifacts.get(name)
        if artifact is None:
            raise ReferenceError_(
                f"{ref.text}: step {ref.step!r} (task {record.id}) has no artifact {name!r}"
                f" (it has: {', '.join(sorted(record.artifacts)) or 'none'})"
            )
        if field == "metadata":
            key = ref.path[3]
            if key not in artifact.metadata:
                raise ReferenceError_(f"{ref.text}: artifact {name!r} has no metadata {key!r}")
            return artifact.metadata[key]
        return artifact.uri if field in ("url", "uri") else getattr(artifact, field)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
