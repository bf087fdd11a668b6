"""Function steps: a plain module-level Python function turned into a standalone step script.

The script holds the module's imports (minus trainyard's own), the function and the module-level
helpers and constants it uses, and a stub that hands the function to the in-task runtime
(``trainyard.runtime.funcstep``): it reads the step's arguments from the task's ``kwargs/<name>``
parameters, calls the function and stores its return value(s) as outputs.
When the module sits in a git checkout, the task records that checkout too: the worker checks it out
and writes the script beside the module, so the module's local imports keep working.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import textwrap
import tokenize
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..queues import gitinfo
from ..queues.errors import InvalidInput, TrainyardError
from ..queues.params import check_value
from ..queues.record import Script, TaskRecord, TaskType
from ..queues.store import new_task_id
from ..queues.task import Task
from ..runtime import funcstep
from ..runtime.funcstep import SECTION_ENV
from .model import FunctionSpec

KWARGS_SECTION = "kwargs"
_STEP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_SECTION = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_RESERVED_TASK_KWARGS = (
    "script",
    "command",
    "source",
    "entry_point",
    "repository",
    "commit",
    "working_dir",
    "detect_repository",
)

# The script's last block: the runtime (trainyard.runtime.funcstep, on every task's path as
# ``trainyard_runtime``) reads the arguments, calls the function and stores its outputs.
DEFAULT_RUNNER = "trainyard_runtime.funcstep:run_step"
_RUNNER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*")
_STUB = """\
if __name__ == "__main__":
    from trainyard import current_task as _trainyard_current_task
    from {runner_module} import {runner_name} as _trainyard_run_step

    _trainyard_run_step(_trainyard_current_task(), {function}, {section!r}, {returns!r})
"""


class FunctionStepError(TrainyardError):
    """A function step run in-process was called or returned against its declaration."""


# -- public API ------------------------------------------------------------------------------------


def function_spec(
    func: Callable[..., Any],
    returns: Sequence[str] = (),
    name: str | None = None,
    requirements: Sequence[str] = (),
    runner: str = DEFAULT_RUNNER,
) -> FunctionSpec:
    """Turn a module-level function into a :class:`FunctionSpec` whose ``source`` is a standalone step script.

    ``runner`` (``module:function``, importable in the step) is called as ``runner(task, function,
    section, returns)`` to run it; the default stores JSON return values as outputs.
    """
    if not isinstance(runner, str) or not _RUNNER.fullmatch(runner):
        raise InvalidInput(f"function step runner {runner!r} must be 'module:function'")
    func = _check_function(func)
    return_names = _check_returns(func, returns)
    step_name = name if name is not None else func.__name__
    if not isinstance(step_name, str) or not _STEP_NAME.fullmatch(step_name):
        raise InvalidInput(
            f"function step name {step_name!r} must be 1 to 100 letters, digits, '_', '.' or '-' "
            "(it names the step's script file)"
        )
    path = _module_file(func)
    module = _Module.read(path)
    node = module.find_function(func)
    package = func.__globals__.get("__package__") or ""
    info = gitinfo.inspect(path)
    working_dir = "."
    bootstrap_depth = 0
    if info is not None:
        root = info.root.resolve()
        rel = path.parent.relative_to(root) if path.parent.is_relative_to(root) else None
        if rel is None:
            raise InvalidInput(f"module file {path} is not under its git checkout {root}")
        working_dir = rel.as_posix() or "."
        depth = len(package.split(".")) if package else 0
        if 0 < depth <= len(rel.parts):
            bootstrap_depth = depth  # the package root is inside the checkout: put it on sys.path
    source = _build_source(func, module, node, return_names, package, bootstrap_depth, runner)
    return FunctionSpec(
        name=step_name,
        source=source,
        module_file=str(path),
        repository=info.repository if info else None,
        commit=info.commit if info else None,
        diff=(info.diff or None) if info else None,
        working_dir=working_dir,
        requirements=_strings(requirements),
    )


def entry_point(spec: FunctionSpec) -> str:
    """The file name the step's script gets in its working folder."""
    return f"{spec.name}_step.py"


def task_for_function(
    spec: FunctionSpec,
    step_name: str,
    project: str = "default",
    kwargs: Mapping[str, Any] | None = None,
    parameters_prefix: str = KWARGS_SECTION,
    **task_kwargs: Any,
) -> Task:
    """Create the draft task that runs ``spec`` with ``kwargs`` (JSON values) as its arguments.

    ``task_kwargs`` go to :meth:`Task.create` (``parameters`` and ``env`` are merged, ``requirements``
    replaces the spec's); the script's own fields come from the spec.
    """
    clash = sorted(set(task_kwargs) & set(_RESERVED_TASK_KWARGS))
    if clash:
        raise InvalidInput(f"task_for_function: {', '.join(clash)} come(s) from the function spec, not from arguments")
    if not isinstance(parameters_prefix, str) or not _SECTION.fullmatch(parameters_prefix):
        raise InvalidInput(
            f"invalid parameters_prefix {parameters_prefix!r}: a section name starts with a letter or _ "
            "and holds only letters, digits, '_', '.', '-'"
        )
    section = parameters_prefix
    arguments = step_arguments(spec, kwargs, section)
    extra = dict(task_kwargs.pop("parameters", None) or {})
    overlap = sorted(set(extra) & set(arguments))
    if overlap:
        raise InvalidInput(f"task_for_function: parameters {', '.join(overlap)} are also given as kwargs")
    env = dict(task_kwargs.pop("env", None) or {})
    if section != KWARGS_SECTION:
        env[SECTION_ENV] = section
    requirements = task_kwargs.pop("requirements", None)
    if requirements is None and spec.requirements:
        requirements = list(spec.requirements)
    task = Task.create(
        step_name,
        project,
        source=spec.source,
        entry_point=entry_point(spec),
        repository=spec.repository,
        commit=spec.commit,
        working_dir=spec.working_dir,
        requirements=requirements,
        parameters={**extra, **arguments},
        env=env or None,
        **task_kwargs,
    )
    if spec.diff:
        diff = spec.diff

        def set_diff(record: Any) -> None:
            record.script.diff = diff

        # Task.create has no diff argument: a draft edit, through Task's own guarded update.
        task._edit(set_diff, "set the diff of")
    return task


def step_arguments(spec: FunctionSpec, kwargs: Mapping[str, Any] | None, section: str = KWARGS_SECTION) -> dict:
    """The function's arguments as typed parameters ``<section>/<arg>``; refuses non-JSON values
    and names that are not Python identifiers, naming the argument."""
    arguments: dict[str, Any] = {}
    for key, value in (kwargs or {}).items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InvalidInput(f"function step {spec.name!r}: argument name {key!r} is not a Python identifier")
        try:
            arguments[f"{section}/{key}"] = check_value(f"{section}/{key}", value)
        except InvalidInput as exc:
            raise InvalidInput(f"function step {spec.name!r}: argument {key!r} is not JSON ({exc})") from None
    return arguments


def function_record(
    spec: FunctionSpec,
    step_name: str,
    project: str,
    kwargs: Mapping[str, Any] | None,
    requirements: Sequence[str] | None = None,
) -> TaskRecord:
    """The (not yet stored) task record that runs ``spec`` with ``kwargs``: what a pipeline launches."""
    script = Script(
        source=spec.source,
        entry_point=entry_point(spec),
        repository=spec.repository,
        commit=spec.commit,
        diff=spec.diff,
        working_dir=spec.working_dir,
        requirements=list(requirements or spec.requirements),
    )
    return TaskRecord(
        id=new_task_id(),
        name=step_name,
        project=project,
        type=TaskType.DATA_PROCESSING,
        script=script,
        parameters=step_arguments(spec, kwargs),
    )


def run_inline(
    func: Callable[..., Any], kwargs: Mapping[str, Any] | None = None, returns: Sequence[str] = ()
) -> dict[str, Any]:
    """Call the step function in this process, as a worker would, and return its values by return name.

    The function runs undecorated, as in a step. A call that does not bind, a wrong number of values
    or a value that is not JSON raises :class:`FunctionStepError` with the step's message.
    """
    func = _check_function(func)
    return_names = _check_returns(func, returns)
    arguments = dict(kwargs or {})
    problem = funcstep.check_call(func, arguments)
    if problem:
        raise FunctionStepError(problem)
    values, problem = funcstep.outputs(func.__name__, return_names, func(**arguments))
    if problem:
        raise FunctionStepError(problem)
    return values


# -- checks ----------------------------------------------------------------------------------------


def _check_function(func: Any) -> Any:
    """The plain module-level Python function behind ``func`` (decorators unwrapped), or InvalidInput."""
    if inspect.isbuiltin(func) or type(func).__name__ in ("method_descriptor", "wrapper_descriptor"):
        raise InvalidInput(
            f"{getattr(func, '__name__', func)!r} is a builtin, not a Python function: "
            "wrap it in a module-level def to make it a step"
        )
    if inspect.ismethod(func):
        raise InvalidInput(f"{func.__qualname__} is a bound method: only module-level functions can be steps")
    try:
        func = inspect.unwrap(func)
    except ValueError as exc:
        raise InvalidInput(f"cannot unwrap {func!r}: {exc}") from None
    if not inspect.isfunction(func):
        raise InvalidInput(f"only plain module-level functions can be steps, got {type(func).__name__} {func!r}")
    label = f"{func.__module__}.{func.__qualname__}"
    if func.__name__ == "<lambda>":
        raise InvalidInput(f"a lambda ({label}) cannot be a step: define it with def at module level")
    if "<locals>" in func.__qualname__:
        raise InvalidInput(
            f"{label} is defined inside another function (a closure): only module-level functions can be steps"
        )
    if func.__qualname__ != func.__name__:
        raise InvalidInput(f"{label} is not a module-level function (defined in a class?)")
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise InvalidInput(f"{label} is an async function: steps must be plain (sync) functions")
    if inspect.isgeneratorfunction(func):
        raise InvalidInput(f"{label} is a generator function: a step must return its values")
    positional = [p.name for p in inspect.signature(func).parameters.values() if p.kind == p.POSITIONAL_ONLY]
    if positional:
        raise InvalidInput(f"{label} has positional-only arguments ({', '.join(positional)}): steps pass keywords")
    return func


def _check_returns(func: Any, returns: Sequence[str] | str) -> list[str]:
    """The return names as a list: identifiers, each once (a single string is one name)."""
    names = [returns] if isinstance(returns, str) else list(returns)
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidInput(f"{func.__name__}: return name {name!r} must be a Python identifier")
    if len(set(names)) != len(names):
        raise InvalidInput(f"{func.__name__}: return names must be unique, got {', '.join(names)}")
    return names


def _strings(values: Sequence[str] | str) -> list[str]:
    """A list of non-empty strings (a single string is one value)."""
    items = [values] if isinstance(values, str) else list(values)
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"expected strings, got {type(item).__name__} {item!r}")
    return [item.strip() for item in items if item.strip()]


def _module_file(func: Any) -> Path:
    """The source file of ``func``'s module; InvalidInput when there is none (REPL, notebook, exec)."""
    raw = func.__code__.co_filename
    path = Path(raw)
    if not raw.startswith("<") and not path.is_absolute():
        path = Path.cwd() / path
    if raw.startswith("<") or not path.is_file():
        where = "interactively (in __main__)" if func.__module__ == "__main__" else f"in {raw}"
        raise InvalidInput(
            f"{func.__module__}.{func.__name__} was defined {where} without a source file: "
            "put it in a .py file to make it a step"
        )
    return path.resolve()


# -- reading the module ----------------------------------------------------------------------------

_PURE = (
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.Dict,
    ast.UnaryOp,
    ast.BinOp,
    ast.BoolOp,
    ast.Compare,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)


def _is_pure(node: ast.expr) -> bool:
    """A constant expression: literals, names, operators, attributes (no calls, lambdas or comprehensions)."""
    return all(isinstance(sub, _PURE) for sub in ast.walk(node))


def _assigned_name(node: ast.stmt) -> str | None:
    """``NAME = value`` or ``NAME: type = value`` with a single plain name."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _bound_names(node: ast.stmt) -> set[str]:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return {sub.id for target in targets for sub in ast.walk(target) if isinstance(sub, ast.Name)}


def _names(nodes: Sequence[ast.AST | None]) -> set[str]:
    return {sub.id for node in nodes if node is not None for sub in ast.walk(node) if isinstance(sub, ast.Name)}


def _root_name(expr: ast.expr) -> str | None:
    """``a`` for ``a``, ``a.b.c`` or ``a.b(...)``."""
    while isinstance(expr, (ast.Call, ast.Attribute)):
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def _is_trainyard(module: str | None) -> bool:
    return module is not None and (module == "trainyard" or module.startswith("trainyard."))


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a module body, descending into top-level if/try/with blocks (not into defs)."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.With, ast.Try, getattr(ast, "TryStar", ast.Try))):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                yield from _statements(block)


@dataclass
class _Module:
    path: Path
    text: str
    tree: ast.Module

    @classmethod
    def read(cls, path: Path) -> _Module:
        try:
            with tokenize.open(path) as handle:  # honours a coding cookie
                text = handle.read()
            return cls(path, text, ast.parse(text, filename=str(path)))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"cannot read the module {path}: {exc}") from None

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)

    def find_function(self, func: Any) -> ast.FunctionDef:
        """The ``def`` of ``func``: by name and first line (decorators included), else the last by name."""
        code = func.__code__
        found = [
            node
            for node in _statements(self.tree.body)
            if isinstance(node, ast.FunctionDef) and node.name == code.co_name
        ]
        for node in found:
            if min([node.lineno] + [d.lineno for d in node.decorator_list]) == code.co_firstlineno:
                return node
        if not found:
            raise InvalidInput(f"cannot find 'def {code.co_name}' at module level in {self.path}")
        return found[-1]

    def definitions(self) -> dict[str, ast.stmt]:
        """Top-level functions, classes and constant assignments by name (the last binding wins)."""
        defs: dict[str, ast.stmt] = {}
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[node.name] = node
                continue
            name = _assigned_name(node)
            if name is not None and node.value is not None and _is_pure(node.value):
                defs[name] = node
                continue
            for bound in _bound_names(node):  # rebound to something we cannot copy
                defs.pop(bound, None)
        return defs

    def segment(self, node: ast.stmt, decorators: Sequence[ast.expr] = ()) -> str:
        """The source lines of ``node`` from its ``def``/``class`` line, after the given decorators' lines."""
        lines = self.lines
        parts = ["".join(lines[d.lineno - 1 : d.end_lineno]) for d in decorators]
        parts.append("".join(lines[node.lineno - 1 : node.end_lineno]))
        return textwrap.dedent("".join(parts)).rstrip() + "\n"


# -- building the script ---------------------------------------------------------------------------


class _Imports:
    """The module's top-level imports, rewritten for a standalone script."""

    def __init__(self, module: _Module, package: str) -> None:
        self.module = module
        self.package = package
        self.trainyard_names: set[str] = set()
        for node in _statements(module.tree.body):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_trainyard(node.module):
                self.trainyard_names.update(alias.asname or alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _is_trainyard(alias.name):
                        self.trainyard_names.add(alias.asname or alias.name.split(".")[0])

    def render(self, used: set[str]) -> tuple[list[str], list[str]]:
        """(``from __future__`` lines, other import lines), in file order."""
        future: list[str] = []
        others: list[str] = []
        for node in self.module.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                future.append(ast.unparse(node))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                kept = self._rewrite(node, used)
                if kept is not None:
                    others.append(ast.unparse(kept))
            elif isinstance(node, ast.Try) and self._import_only(node):
                others.append(ast.unparse(_RelativeImports(self.package).visit(node)))
        return future, others

    def _import_only(self, node: ast.Try) -> bool:
        """A ``try: import x / except ImportError: x = None`` block without trainyard imports."""
        body = [*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)]
        for stmt in body:
            if isinstance(stmt, ast.Import) and not any(_is_trainyard(a.name) for a in stmt.names):
                continue
            if isinstance(stmt, ast.ImportFrom) and not (stmt.level == 0 and _is_trainyard(stmt.module)):
                continue
            if isinstance(stmt, ast.Pass):
                continue
            if _assigned_name(stmt) is not None and _is_pure(stmt.value):  # type: ignore[attr-defined]
                continue
            return False
        return True

    def _rewrite(self, node: ast.Import | ast.ImportFrom, used: set[str]) -> ast.stmt | None:
        """The import as the script needs it: trainyard imports dropped, except what the step uses of
        ``current_task`` or a bare ``import trainyard``; relative imports made absolute."""
        if isinstance(node, ast.Import):
            names = [
                alias
                for alias in node.names
                if not _is_trainyard(alias.name)
                or (alias.name == "trainyard" and (alias.asname or "trainyard") in used)
            ]
            return ast.Import(names=names) if names else None
        if node.level == 0 and _is_trainyard(node.module):
            names = [a for a in node.names if a.name == "current_task" and (a.asname or a.name) in used]
            return ast.ImportFrom(module="trainyard", names=names, level=0) if names else None
        return _RelativeImports(self.package).visit(node)


class _RelativeImports(ast.NodeTransformer):
    """``from .x import y`` -> ``from pkg.x import y`` (the script is not part of a package)."""

    def __init__(self, package: str) -> None:
        self.package = package

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom:  # noqa: N802 - ast visitor API
        if node.level == 0 or not self.package:
            return node
        try:
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), self.package)
        except (ImportError, ValueError) as exc:
            raise InvalidInput(f"cannot resolve relative import in package {self.package!r}: {exc}") from None
        return ast.ImportFrom(module=module, names=node.names, level=0)


def _build_source(
    func: Any,
    module: _Module,
    node: ast.FunctionDef,
    returns: list[str],
    package: str,
    bootstrap_depth: int,
    runner: str = DEFAULT_RUNNER,
) -> str:
    """The standalone script: imports, the function with its helpers and constants, the runner stub."""
    imports = _Imports(module, package)
    defs = module.definitions()
    # first line -> (source, is a constant); the step itself goes without its decorators
    chosen: dict[int, tuple[str, bool]] = {node.lineno: (module.segment(node), False)}
    used = _names([node.args, node.returns, *node.body])
    todo = list(used)
    seen = {node.name}
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        found = defs[name]
        if isinstance(found, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            decorators = [d for d in found.decorator_list if _root_name(d) not in imports.trainyard_names]
            parts: list[ast.AST | None] = [*decorators, *found.body]
            if isinstance(found, ast.ClassDef):
                parts += [*found.bases, *found.keywords]
            else:
                parts += [found.args, found.returns]
            chosen[found.lineno] = (module.segment(found, decorators), False)
        else:
            parts = [found]
            chosen[found.lineno] = (module.segment(found), True)
        names = _names(parts)
        used |= names
        todo.extend(names)
    future, others = imports.render(used)
    header = [f"# trainyard function step: {func.__module__}.{node.name} (generated; edit the module instead)"]
    blocks = ["\n".join(header + future)]
    if bootstrap_depth:
        blocks.append(
            "import sys as _trainyard_sys\n"
            "from pathlib import Path as _trainyard_Path\n\n"
            "# the module's package root, so its absolute and relative imports resolve\n"
            f"_trainyard_sys.path.insert(1, str(_trainyard_Path(__file__).resolve().parents[{bootstrap_depth}]))"
        )
    if others:
        blocks.append("\n".join(others))
    constants: list[str] = []  # consecutive constants stay together
    for line in sorted(chosen):
        text, is_constant = chosen[line]
        if is_constant:
            constants.append(text.rstrip("\n"))
            continue
        if constants:
            blocks.append("\n".join(constants))
            constants = []
        blocks.append(text.rstrip("\n"))
    if constants:
        blocks.append("\n".join(constants))
    blocks.append(
        _STUB.format(
            runner_module=runner.partition(":")[0],
            runner_name=runner.partition(":")[2],
            section=KWARGS_SECTION,
            function=node.name,
            returns=returns,
        ).rstrip("\n")
    )
    source = "\n\n\n".join(block for block in blocks if block) + "\n"
    try:
        compile(source, f"{node.name}_step.py", "exec")
    except SyntaxError as exc:  # e.g. a module only newer Pythons parse, unparsed differently
        raise InvalidInput(f"the script generated for {node.name} does not compile: {exc}") from None
    return source
