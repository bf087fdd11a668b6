"""Reading YAML or JSON text into plain data while keeping the line of every value.

Mapping keys stay strings as written (YAML 1.1 would read ``on:`` as ``true``); duplicate keys are
refused; scalars get their usual YAML types.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import FileError, PipelineFileError, field_path

Lines = dict[tuple, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader used only to construct scalars."""


def parse(text: str, filename: str) -> tuple[Any, Lines]:
    """(data, {path: 1-based line}); raises PipelineFileError for syntax errors and duplicate keys."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise PipelineFileError([FileError(file=filename, line=line, message=f"syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise PipelineFileError([FileError(file=filename, message=f"syntax error: {exc}")]) from None
    if node is None:
        return None, {}
    lines: Lines = {}
    errors: list[FileError] = []
    loader = _Loader("")
    data = _build(node, (), lines, errors, loader, filename)
    if errors:
        raise PipelineFileError(errors)
    return data, lines


def _build(node: yaml.Node, path: tuple, lines: Lines, errors: list, loader: _Loader, filename: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys (<<)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append(
                    FileError(
                        file=filename,
                        line=key_node.start_mark.line + 1,
                        field=field_path(path),
                        message="keys must be plain strings",
                    )
                )
                continue
            key = key_node.value
            if key in out:
                errors.append(
                    FileError(
                        file=filename,
                        line=key_node.start_mark.line + 1,
                        field=field_path((*path, key)),
                        message="duplicate key",
                    )
                )
                continue
            out[key] = _build(value_node, (*path, key), lines, errors, loader, filename)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines, errors, loader, filename) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        errors.append(FileError(file=filename, line=node.start_mark.line + 1, field=field_path(path), message=str(exc)))
        return None


def line_of(lines: Lines, path: tuple) -> int | None:
    """The line of ``path``, or of its nearest parent that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
