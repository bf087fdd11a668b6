"""``${{ ... }}`` expressions: parsing, checking and evaluating (standard library only).

This file is also shipped, together with ``jobrun.py``, to the worker that runs a job, so it must
not import anything outside the standard library (and must run on Python 3.8+).

An expression is a reference (``params.lr``, ``inputs.x``, ``steps.prep.outputs.rows``,
``jobs.train.outputs.acc``, ``env.HOME``, ``event.id``), a literal (``'text'``, ``3``, ``true``,
``null``), a comparison (``== != < <= > >=``), ``!``, ``&&``, ``||``, parentheses, or a call of
``contains``, ``startsWith``, ``endsWith``, ``toJSON``, ``fromJSON``, ``join``, ``format``.
A value that is exactly one ``${{ }}`` keeps its type; inside longer text it becomes text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<str>'(?:[^']|'')*')|"
    r"(?P<op>==|!=|<=|>=|&&|\|\||[<>!(),\[\].])|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
FUNCTIONS = ("contains", "startsWith", "endsWith", "toJSON", "fromJSON", "join", "format")
NAMESPACES = ("params", "inputs", "steps", "jobs", "env", "event", "needs", "vars", "secrets", "variable")
# DataTorch's spellings: ``steps.<step name>.output.<key>`` (a name may hold spaces), ``input.<key>``
_NAMED_STEP = re.compile(r"\bsteps\.([^.'\[\]()]+?)\.(outputs?|outcome)\b")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated (the message says why)."""


Node = tuple  # ("lit", v) | ("ref", (parts...)) | ("not", n) | ("bin", op, a, b) | ("call", name, [args])


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"unexpected {text[pos : pos + 10]!r} in expression {text!r}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, value: str = "") -> tuple[str, str]:
        tok = self.peek()
        if value and tok[1] != value:
            raise ExpressionError(f"expected {value!r} in expression {self.text!r}")
        if tok[0] == "end":
            raise ExpressionError(f"unexpected end of expression {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            raise ExpressionError("empty expression")
        node = self.or_()
        if self.peek()[0] != "end":
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in expression {self.text!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            node = ("bin", "||", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            node = ("bin", "&&", node, self.cmp())
        return node

    def cmp(self) -> Node:
        node = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            node = ("bin", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == ("op", "!"):
            self.take()
            return ("not", self.unary())
        return self.atom()

    def atom(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            return ("lit", float(value) if any(c in value for c in ".eE") else int(value))
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if (kind, value) == ("op", "("):
            node = self.or_()
            self.take(")")
            return node
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            if self.peek() == ("op", "("):
                return self.call(value)
            parts = [value]
            while self.peek()[1] in (".", "["):
                if self.take()[1] == ".":
                    k, v = self.take()
                    if k not in ("name", "num"):
                        raise ExpressionError(f"expected a name after '.' in expression {self.text!r}")
                    parts.append(v)
                else:
                    k, v = self.take()
                    if k == "str":
                        parts.append(v[1:-1].replace("''", "'"))
                    elif k == "num":
                        parts.append(int(v))
                    else:
                        raise ExpressionError(f"expected an index in brackets in expression {self.text!r}")
                    self.take("]")
            return ("ref", _canonical(parts))
        raise ExpressionError(f"unexpected {value!r} in expression {self.text!r}")

    def call(self, name: str) -> Node:
        if name not in FUNCTIONS:
            raise ExpressionError(f"unknown function {name}() (known: {', '.join(FUNCTIONS)})")
        self.take("(")
        args = []
        if self.peek() != ("op", ")"):
            args.append(self.or_())
            while self.peek() == ("op", ","):
                self.take()
                args.append(self.or_())
        self.take(")")
        return ("call", name, args)


def _canonical(parts: list) -> tuple:
    """DataTorch's aliases mapped onto trainyard's names: ``input.`` -> ``inputs.``, ``.output.`` -> ``.outputs.``."""
    if parts[0] == "input":
        parts[0] = "inputs"
    if parts[0] in ("steps", "jobs", "needs") and len(parts) > 2 and parts[2] == "output":
        parts[2] = "outputs"
    return tuple(parts)


def _quote_step_names(text: str) -> str:
    """``steps.Download File.output.path`` -> ``steps['Download File'].output.path`` (names with spaces)."""

    def swap(match: re.Match) -> str:
        name = match.group(1).strip()
        if _PLAIN_NAME.fullmatch(name):
            return match.group(0)
        return "steps['" + name.replace("'", "''") + "']." + match.group(2)

    return _NAMED_STEP.sub(swap, text)


def parse(text: str) -> Node:
    return _Parser(_quote_step_names(text)).parse()


def references(node: Node) -> Iterator[tuple]:
    """Every reference (a tuple of path parts) in a parsed expression."""
    if node[0] == "ref":
        yield node[1]
    elif node[0] == "not":
        yield from references(node[1])
    elif node[0] == "bin":
        yield from references(node[2])
        yield from references(node[3])
    elif node[0] == "call":
        for arg in node[2]:
            yield from references(arg)


def expressions(value: Any) -> Iterator[str]:
    """The text of every ``${{ }}`` in a (nested) value."""
    if isinstance(value, str):
        for match in TEMPLATE.finditer(value):
            yield match.group(1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def lookup(ref: tuple, context: dict[str, Any]) -> Any:
    current: Any = context
    for i, part in enumerate(ref):
        if (
            isinstance(current, dict)
            and part in current
            or isinstance(current, list)
            and isinstance(part, int)
            and -len(current) <= part < len(current)
        ):
            current = current[part]
        else:
            where = ".".join(str(p) for p in ref[: i + 1])
            raise ExpressionError(f"{'.'.join(str(p) for p in ref)} is not set (nothing at {where})")
    return current


def evaluate(node: Node, context: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ref":
        return lookup(node[1], context)
    if kind == "not":
        return not _truthy(evaluate(node[1], context))
    if kind == "bin":
        op = node[1]
        if op == "&&":
            left = evaluate(node[2], context)
            return evaluate(node[3], context) if _truthy(left) else left
        if op == "||":
            left = evaluate(node[2], context)
            return left if _truthy(left) else evaluate(node[3], context)
        a, b = evaluate(node[2], context), evaluate(node[3], context)
        if op == "==":
            return _loose(a) == _loose(b)
        if op == "!=":
            return _loose(a) != _loose(b)
        try:
            return _order(op, a, b)
        except TypeError:
            raise ExpressionError(f"cannot compare {a!r} {op} {b!r}") from None
    if kind == "call":
        return _call(node[1], [evaluate(arg, context) for arg in node[2]])
    raise ExpressionError(f"bad expression node {kind}")


def _order(op: str, a: Any, b: Any) -> bool:
    a, b = _loose(a), _loose(b)
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _loose(value: Any) -> Any:
    """Numbers written as text compare as numbers (``'3' == 3``)."""
    if isinstance(value, str):
        try:
            return float(value) if value.strip() else value
        except ValueError:
            return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value not in ("", "false", "0")
    return bool(value)


def _call(name: str, args: list[Any]) -> Any:
    def need(n: int) -> None:
        if len(args) != n:
            raise ExpressionError(f"{name}() takes {n} argument(s), got {len(args)}")

    if name == "contains":
        need(2)
        hay, needle = args
        if isinstance(hay, str):
            return str(needle).lower() in hay.lower()
        return needle in (hay or [])
    if name in ("startsWith", "endsWith"):
        need(2)
        text, part = str(args[0]).lower(), str(args[1]).lower()
        return text.startswith(part) if name == "startsWith" else text.endswith(part)
    if name == "toJSON":
        need(1)
        return json.dumps(args[0])
    if name == "fromJSON":
        need(1)
        try:
            return json.loads(args[0])
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"fromJSON(): not JSON ({exc})") from None
    if name == "join":
        if len(args) not in (1, 2):
            raise ExpressionError("join() takes 1 or 2 arguments")
        sep = args[1] if len(args) == 2 else ","
        return str(sep).join(as_text(v) for v in (args[0] or []))
    if name == "format":
        if not args:
            raise ExpressionError("format() needs a format string")
        out = str(args[0])
        for i, value in enumerate(args[1:]):
            out = out.replace("{" + str(i) + "}", as_text(value))
        return out
    raise ExpressionError(f"unknown function {name}()")


def as_text(value: Any) -> str:
    """How a value reads inside text: strings as-is, booleans true/false, null empty, others JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _whole(text: str) -> re.Match | None:
    """``${{ a }}`` alone (not ``${{ a }} and ${{ b }}``, which a lazy full match would also take)."""
    match = TEMPLATE.fullmatch(text)
    return match if match and "}}" not in match.group(1) else None


def render(value: Any, context: dict[str, Any]) -> Any:
    """Every ``${{ }}`` in a (nested) value evaluated; a string that is one whole expression keeps its type."""
    if isinstance(value, str):
        whole = _whole(value.strip())
        if whole:
            return evaluate(parse(whole.group(1)), context)
        return TEMPLATE.sub(lambda m: as_text(evaluate(parse(m.group(1)), context)), value)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def condition(value: Any, context: dict[str, Any]) -> bool:
    """An ``if``: a boolean, an expression with or without ``${{ }}``."""
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    text = value.strip()
    whole = _whole(text)
    return _truthy(evaluate(parse(whole.group(1) if whole else text), context))


def shell_safe(command: str, prefix: str = "TRAINYARD_EXPR_") -> tuple[str, dict[str, str]]:
    """A command with every ``${{ expr }}`` replaced by ``${VAR}``, and {VAR: expr}.

    The values then reach the shell only through the environment: the command text itself is fixed
    by the file's author, so a value such as ``$(touch pwned)`` is never parsed as shell code.
    """
    found: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        name = f"{prefix}{len(found)}"
        found[name] = match.group(1)
        return "${" + name + "}"

    return TEMPLATE.sub(swap, command), found
