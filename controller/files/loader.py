"""Reading YAML or JSON text into plain data while keeping the line of every value.

Mapping keys stay strings as written (YAML 1.1 would read ``on:`` as ``true``); duplicate keys are
refused; scalars get their usual YAML types. The work is bounded whatever the text: its size, its
nesting and what its aliases expand to (a few hundred bytes of nested aliases would otherwise expand
to billions of values) are capped, with one clear error.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .errors import FileError, PipelineFileError, field_path

Lines = dict[tuple, int]

MAX_TEXT = 1_000_000  # characters of one file
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_VALUES = 100_000  # values after aliases are expanded
MAX_ALIASES = 1_000  # uses of an anchored mapping or list


def _check_size(root: yaml.Node) -> None:
    """Raise _TooBig when building ``root`` would cost too much: too deep, too many values once its
    aliases (and ``<<`` merges, which copy) are expanded, too many aliases, or an alias inside itself.
    Each node is sized once (memoised), so this pass costs the size of the text, not of the expansion."""
    sizes: dict[int, int] = {}
    aliases = 0

    def size(node: yaml.Node, depth: int) -> int:
        nonlocal aliases
        if depth > MAX_DEPTH:
            raise _TooBig(f"nested more than {MAX_DEPTH} levels deep", node)
        if not isinstance(node, yaml.CollectionNode):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise _TooBig("an alias refers to the mapping or list that holds it", node)
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _TooBig(f"more than {MAX_ALIASES:,} uses of anchored mappings or lists (aliases)", node)
            return known
        sizes[id(node)] = -1  # being sized
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_VALUES:
                raise _TooBig(f"more than {MAX_VALUES:,} values once its aliases are expanded", node)
        sizes[id(node)] = total
        return total

    size(root, 0)


class _TooBig(Exception):
    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.line = node.start_mark.line + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader used only to construct scalars."""


def parse(text: str, filename: str) -> tuple[Any, Lines]:
    """(data, {path: 1-based line}); raises PipelineFileError for syntax errors, duplicate keys and
    files too big, too deep or expanding too far."""
    if len(text) > MAX_TEXT:
        raise PipelineFileError([FileError(file=filename, message=f"too big: over {MAX_TEXT:,} characters")])
    if filename.lower().endswith(".json"):  # JSON, not YAML: no comments, no trailing commas
        try:
            json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            message = f"not valid JSON: {getattr(exc, 'msg', str(exc))}"
            raise PipelineFileError([FileError(file=filename, line=line, message=message)]) from None
        except RecursionError:
            message = f"too deep: nested more than {MAX_DEPTH} levels deep"
            raise PipelineFileError([FileError(file=filename, message=message)]) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except RecursionError:
        message = f"too deep: nested more than {MAX_DEPTH} levels deep"
        raise PipelineFileError([FileError(file=filename, message=message)]) from None
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
    try:
        _check_size(node)
    except _TooBig as exc:
        raise PipelineFileError([FileError(file=filename, line=exc.line, message=f"too big: {exc}")]) from None
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
