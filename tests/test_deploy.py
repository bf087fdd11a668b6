"""The deployment files under deploy/: compose, the Helm chart, the systemd unit and the Dockerfile.

Every worker command line they contain is checked against the real CLI: click parses it (no
worker starts), so a flag the CLI does not have, or a value it refuses, fails here.

The Helm chart is rendered twice when a ``helm`` binary is on PATH: once with ``helm template``
and once with ``GoTemplate`` below. Without helm (as on the project's machines, where it cannot be
installed) only ``GoTemplate`` runs. ``GoTemplate`` is a stand-in for ``helm template``, not Helm:
it implements just the part of Go's text/template and of Helm's/Sprig's functions that the chart
uses, with Helm's rules where they bite (``{{-``/``-}}`` trimming, numbers from values files are
float64, ``eq`` refuses to compare an int with a float, field access on a missing value fails,
a missing value prints as nothing), and it raises on any function or syntax it does not know, so a
chart change that leaves the subset fails loudly instead of rendering something Helm would not.
"""

from __future__ import annotations

import base64
import configparser
import copy
import json
import os
import re
import secrets
import shlex
import shutil
import string
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml
from conftest import REPO

from trainyard.cli.worker_cmds import worker
from trainyard.queues.backend import sentinel
from trainyard.queues.errors import InvalidInput
from trainyard.worker.gpus import parse_gpu_spec

DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "trainyard"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
UNIT = DEPLOY / "systemd" / "trainyard-worker@.service"
EXAMPLE_ENV = DEPLOY / "systemd" / "example.env"


# -- the real CLI as the judge of every worker command line ----------------------------------------


def worker_params(args: list[str]) -> dict:
    """Parse `trainyard worker ARGS` with click (nothing runs); fail the test on a bad command line.

    Beyond click's own checks, the rules the command enforces when it starts: a queue is given,
    the GPU spec parses, --gpus and --cpu-only exclude each other, services mode takes no GPUs.
    """
    args = [str(a) for a in args]
    line = f"`trainyard worker {shlex.join(args)}`"
    try:
        ctx = worker.make_context("worker", list(args), resilient_parsing=False)
    except click.UsageError as exc:  # NoSuchOption, BadParameter, MissingParameter, ...
        pytest.fail(f"{line} is refused by the CLI: {exc.format_message()}")
    leftover = list(ctx.args) + list(ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args)
    params = ctx.params
    if leftover:
        pytest.fail(f"{line}: stray arguments {leftover}")
    if not params["queues"]:
        pytest.fail(f"{line} names no --queue")
    if params["gpus"] is not None:
        try:
            parse_gpu_spec(params["gpus"])
        except InvalidInput as exc:
            pytest.fail(f"{line}: {exc}")
        if params["cpu_only"]:
            pytest.fail(f"{line}: --gpus and --cpu-only exclude each other")
    if params["services"] is not None and (params["gpus"] is not None or params["mode"] != "local"):
        pytest.fail(f"{line}: --services-mode runs tasks locally without GPUs")
    if params["services"] is not None and params["docker_image"]:
        pytest.fail(f"{line}: --services-mode runs tasks locally, not in docker")
    return params


def test_worker_params_catches_bad_command_lines():
    worker_params(["--queue", "cpu", "--cpu-only"])
    for bad in (
        ["--queue", "cpu", "--no-such-flag"],
        ["--services-mode", "0", "--queue", "services"],
        ["--queue", "cpu", "list-them"],
        ["--cpu-only"],
        ["--queue", "gpu", "--gpus", "0-x"],
        ["--queue", "gpu", "--gpus", "0", "--cpu-only"],
        ["--queue", "services", "--services-mode", "8", "--gpus", "0"],
    ):
        with pytest.raises(pytest.fail.Exception):
            worker_params(bad)


# -- compose ----------------------------------------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def compose_interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default} and $$ (a literal $), with an empty environment by default."""
    env = env or {}

    def sub(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(3)
        value = env.get(name, "")
        return value if value or match.group(2) is None else match.group(2)

    return _COMPOSE_VAR.sub(sub, text)


@pytest.fixture(scope="module")
def compose():
    raw = (DEPLOY / "compose.yaml").read_text()
    assert isinstance(yaml.safe_load(raw), dict)
    return yaml.safe_load(compose_interpolate(raw))


def _runs_trainyard(service: dict) -> bool:
    build = service.get("build") or {}
    return build.get("dockerfile") == "deploy/docker/Dockerfile" or "trainyard" in str(service.get("image", ""))


def test_compose_services_and_commands(compose):
    services = compose["services"]
    workers = {name: svc for name, svc in services.items() if _runs_trainyard(svc)}
    assert {"worker-cpu", "worker-services", "worker-gpu"} <= set(workers)
    for name, svc in workers.items():
        command = svc["command"]
        assert isinstance(command, list) and command[0] == "worker", name  # after ENTRYPOINT tini -- trainyard
        params = worker_params(command[1:])
        assert svc.get("stop_grace_period"), f"{name}: give SIGTERM's drain time to finish a task"
        assert (svc["build"]["context"], svc["build"]["dockerfile"]) == ("..", "deploy/docker/Dockerfile")
        if name == "worker-cpu":
            assert params["cpu_only"] and params["queues"] == ("cpu",)
        if name == "worker-services":
            assert params["services"] == 8 and params["queues"] == ("services",)
        if name == "worker-gpu":
            assert svc["profiles"] == ["gpu"]
            assert parse_gpu_spec(params["gpus"]) == [0]
            (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
            assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] == 1
        else:
            assert "profiles" not in svc


def test_compose_redis_and_urls(compose):
    services = compose["services"]
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    command = redis["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    assert argv[0] == "redis-server"
    flags = dict(zip(argv[1::2], argv[2::2]))
    assert flags["--appendonly"] == "yes"
    password = flags["--requirepass"]
    assert password == "change-me"  # the local default; TRAINYARD_REDIS_PASSWORD overrides it
    volume = next(v for v in redis["volumes"] if v.endswith(":/data"))
    assert volume.split(":")[0] in compose["volumes"], "Redis data goes on a named volume"
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    for name, svc in services.items():
        if not _runs_trainyard(svc):
            continue
        url = urlsplit(svc["environment"]["TRAINYARD_REDIS_URL"])
        assert (url.scheme, url.hostname, url.port, url.password) == ("redis", "redis", 6379, password), name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_compose_password_comes_from_the_environment():
    raw = (DEPLOY / "compose.yaml").read_text()
    doc = yaml.safe_load(compose_interpolate(raw, {"TRAINYARD_REDIS_PASSWORD": "from-env"}))
    assert "change-me" not in json.dumps(doc)
    assert urlsplit(doc["services"]["worker-cpu"]["environment"]["TRAINYARD_REDIS_URL"]).password == "from-env"


def test_compose_config_with_docker_compose():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("`docker compose` is not installed here")
    proc = subprocess.run(
        [docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "--profile", "gpu", "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


# -- compose.sentinel.yaml: Redis that fails over -------------------------------------------------


def _merge_compose(base, override):
    """Compose's merge of an override file, for what these files use: mappings merge key by key,
    anything else (a command list, a string) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge_compose(base[key], value) if key in base else value
        return out
    return copy.deepcopy(override)


def _sentinel_compose(env: dict[str, str] | None = None) -> dict:
    raw = (DEPLOY / "compose.sentinel.yaml").read_text()
    assert isinstance(yaml.safe_load(raw), dict)
    base = yaml.safe_load(compose_interpolate((DEPLOY / "compose.yaml").read_text(), env))
    return _merge_compose(base, yaml.safe_load(compose_interpolate(raw, env)))


def _flags(argv: list[str]) -> dict[str, str]:
    """Each ``--flag`` of a redis-server command line with the word after it."""
    return {flag: value for flag, value in zip(argv, argv[1:]) if flag.startswith("--")}


def _sentinel_conf(service: dict) -> list[list[str]]:
    """The configuration lines a sentinel service writes before it starts."""
    script = service["command"][0]
    body = script.split("<<EOF\n", 1)[1].split("\nEOF\n", 1)[0]
    return [line.split() for line in body.splitlines()]


def test_compose_sentinel_override():
    doc = _sentinel_compose({"TRAINYARD_REDIS_PASSWORD": "pw-1"})
    services = doc["services"]
    primary, replica = services["redis"]["command"], services["redis-replica"]["command"]
    assert primary[0] == replica[0] == "redis-server"
    for argv, name in ((primary, "redis"), (replica, "redis-replica")):
        flags = _flags(argv)
        assert flags["--appendonly"] == "yes" and flags["--requirepass"] == flags["--masterauth"] == "pw-1", name
        assert flags["--replica-announce-ip"] == name  # what the sentinels hand out: the compose name
    assert replica[replica.index("--replicaof") + 1 : replica.index("--replicaof") + 3] == ["redis", "6379"]
    assert services["redis-replica"]["volumes"] == ["redis-replica-data:/data"]
    sentinels = sorted(name for name in services if name.startswith("sentinel-"))
    assert sentinels == ["sentinel-1", "sentinel-2", "sentinel-3"]
    for name in sentinels:
        conf = _sentinel_conf(services[name])
        assert ["sentinel", "monitor", "trainyard", "redis", "6379", "2"] in conf  # quorum 2 of 3
        assert ["sentinel", "auth-pass", "trainyard", "$TRAINYARD_REDIS_PASSWORD"] in conf  # from its env
        assert services[name]["environment"]["TRAINYARD_REDIS_PASSWORD"] == "pw-1"
        assert ["sentinel", "resolve-hostnames", "yes"] in conf and ["port", "26379"] in conf
    workers = {name: svc for name, svc in services.items() if _runs_trainyard(svc)}
    assert {"worker-cpu", "worker-services", "worker-gpu"} <= set(workers)
    for name, svc in workers.items():
        target = sentinel.parse(svc["environment"]["TRAINYARD_REDIS_URL"])
        assert target.sentinels == [(s, 26379) for s in sentinels] and target.service == "trainyard", name
        assert (target.password, target.db) == ("pw-1", 0), name
        assert svc["environment"]["TRAINYARD_REDIS_REPLICAS"] == "1", name
        assert set(sentinels) <= set(svc["depends_on"]) and "redis" in svc["depends_on"], name
        assert svc["command"][0] == "worker" and worker_params(svc["command"][1:]), name
    assert "change-me" not in json.dumps(doc)


def test_compose_sentinel_config_with_docker_compose():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("`docker compose` is not installed here")
    files = ["-f", str(DEPLOY / "compose.yaml"), "-f", str(DEPLOY / "compose.sentinel.yaml")]
    proc = subprocess.run(
        [docker, "compose", *files, "--profile", "gpu", "config", "-q"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_sentinel_servers_fail_over_for_real(tmp_path):
    """The override's Redis flags and sentinel script, run for real on this machine (redis-server
    and Debian's redis-sentinel; no redis:7 image and no Docker DNS here, so each compose name is
    swapped for 127.0.0.1 and a port of its own): the sentinels find each other and the replica,
    and when the primary dies they promote the replica, which a trainyard client reaches through
    the override's URL."""
    if shutil.which("redis-sentinel") is None:
        pytest.skip("needs Debian's redis-sentinel")
    from redis_server import free_port
    from sentinel_cluster import until

    from trainyard.embedded import redis_server_binary

    services = _sentinel_compose({"TRAINYARD_REDIS_PASSWORD": "pw-2"})["services"]
    ports = {name: free_port() for name in ("redis", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3")}
    procs: dict[str, subprocess.Popen] = {}

    def local(argv: list[str], name: str) -> list[str]:
        out = []
        for i, arg in enumerate(argv):
            if argv[i - 1] in ("--replicaof", "--replica-announce-ip") and arg in ports:
                out.append("127.0.0.1")
            elif i > 1 and argv[i - 2] == "--replicaof":
                assert arg == "6379"
                out.append(str(ports[argv[i - 1]]))
            else:
                out.append(arg)
        out = [redis_server_binary(), *out[1:], "--port", str(ports[name]), "--bind", "127.0.0.1"]
        return [*out, "--dir", str(tmp_path / name), "--daemonize", "no"]

    def spawn(name: str, argv: list[str], env: dict | None = None) -> None:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    try:
        for name in ("redis", "redis-replica"):
            (tmp_path / name).mkdir()
            spawn(name, local(services[name]["command"], name))
        replica = __import__("redis").Redis(port=ports["redis-replica"], password="pw-2")
        until(lambda: replica.info("replication")["master_link_status"] == "up", "the replica's link")
        for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
            script = services[name]["command"][0]
            script = script.replace("/tmp/sentinel.conf", str(tmp_path / f"{name}.conf"))
            script = script.replace("port 26379", f"port {ports[name]}\nbind 127.0.0.1\ndir {tmp_path}")
            script = script.replace("trainyard redis 6379", f"trainyard 127.0.0.1 {ports['redis']}")
            spawn(name, ["sh", "-c", script], services[name]["environment"])
        for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
            s = __import__("redis").Redis(port=ports[name])
            until(
                lambda s=s: (m := s.sentinel_master("trainyard"))["num-other-sentinels"] == 2 and m["num-slaves"] == 1,
                "the sentinels to know each other and the replica",
            )
        procs["redis"].kill()
        procs["redis"].wait()
        s = __import__("redis").Redis(port=ports["sentinel-1"])
        until(lambda: s.sentinel_get_master_addr_by_name("trainyard")[1] == ports["redis-replica"], "the failover", 90)
        url = services["worker-cpu"]["environment"]["TRAINYARD_REDIS_URL"]
        for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
            url = url.replace(f"{name}:26379", f"127.0.0.1:{ports[name]}")
        client = sentinel.client(url, {"socket_timeout": 10})
        client.set("after-the-failover", "1")  # the promoted replica takes writes
        assert replica.get("after-the-failover") == b"1"
    finally:
        for proc in reversed(list(procs.values())):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- a stand-in for `helm template`: the Go-template subset the chart uses --------------------------


class TemplateError(Exception):
    pass


_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:\\.|[^"\\])*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>:=|[()|=,])
    )""",
    re.X,
)
_KEYWORDS = {"if", "else", "end", "range", "with", "define"}


def _lex(source: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(source):
        if not source[pos:].strip():
            break
        match = _TOKEN.match(source, pos)
        if match is None:
            raise TemplateError(f"cannot read {source[pos:]!r} in {{{{ {source} }}}}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    """Tokens of one action -> a pipeline: {"decl": [...], "op": ":="|"="|None, "cmds": [[arg, ...], ...]}."""

    def __init__(self, tokens):
        self.tokens, self.pos = tokens, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def pipeline(self, stop=None):
        decl, op = [], None
        save = self.pos
        while self.peek()[0] == "var":
            decl.append(self.take()[1])
            if self.peek() == ("punct", ","):
                self.take()
                continue
            break
        if decl and self.peek()[0] == "punct" and self.peek()[1] in (":=", "="):
            op = self.take()[1]
        else:
            decl, self.pos = [], save
        cmds = [[]]
        while self.peek()[0] is not None and self.peek() != stop:
            kind, text = self.take()
            if (kind, text) == ("punct", "|"):
                cmds.append([])
            elif (kind, text) == ("punct", "("):
                cmds[-1].append(("pipe", self.pipeline(stop=("punct", ")"))))
                if self.take() != ("punct", ")"):
                    raise TemplateError("unclosed (")
            elif kind == "str":
                cmds[-1].append(("lit", json.loads(text)))
            elif kind == "raw":
                cmds[-1].append(("lit", text[1:-1]))
            elif kind == "num":
                cmds[-1].append(("lit", float(text) if "." in text else int(text)))
            elif kind == "ident" and text in ("true", "false", "nil"):
                cmds[-1].append(("lit", {"true": True, "false": False, "nil": None}[text]))
            elif kind == "ident":
                cmds[-1].append(("fn", text))
            elif kind == "var":
                name, *fields = text.split(".")
                cmds[-1].append(("var", name, fields))
            elif kind == "field":
                cmds[-1].append(("field", [f for f in text.split(".") if f]))
            else:
                raise TemplateError(f"unexpected {text!r}")
        if any(not cmd for cmd in cmds):
            raise TemplateError("empty command in pipeline")
        return {"decl": decl, "op": op, "cmds": cmds}


def _parse(source: str, defines: dict) -> list:
    """Template text -> a node list; `define`d templates go into `defines`."""
    pieces, pos, trim_next = [], 0, False
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            pieces.append(("text", text))
        body = match.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            pieces.append(("action", body))
        trim_next, pos = bool(match.group(3)), match.end()
    text = source[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    if text:
        pieces.append(("text", text))

    def block(index, top=False):
        """Nodes until a matching else/end; returns (nodes, index, the stopping keyword's action)."""
        nodes = []
        while index < len(pieces):
            kind, body = pieces[index]
            index += 1
            if kind == "text":
                nodes.append(("text", body))
                continue
            tokens = _lex(body)
            head = tokens[0][1] if tokens and tokens[0][0] == "ident" and tokens[0][1] in _KEYWORDS else None
            if head in ("end", "else"):
                if top:
                    raise TemplateError(f"unexpected {{{{ {body} }}}}")
                return nodes, index, tokens
            if head == "define":
                name = json.loads(tokens[1][1])
                inner, index, stop = block(index)
                if stop[0][1] != "end":
                    raise TemplateError("define ends with else")
                defines[name] = inner
            elif head in ("if", "with", "range"):
                node, index = control(head, tokens[1:], index)
                nodes.append(node)
            else:
                nodes.append(("action", _Parser(tokens).pipeline()))
        if not top:
            raise TemplateError("missing {{ end }}")
        return nodes, index, None

    def control(head, tokens, index):
        branches, otherwise = [], None
        pipe = _Parser(tokens).pipeline()
        while True:
            nodes, index, stop = block(index)
            branches.append((pipe, nodes))
            if stop[0][1] == "end":
                break
            if len(stop) > 1 and stop[1] == ("ident", "if") and head == "if":  # else if
                pipe = _Parser(stop[2:]).pipeline()
                continue
            otherwise, index, stop = block(index)
            if stop[0][1] != "end":
                raise TemplateError("two {{ else }} in one block")
            break
        return (head, branches, otherwise), index

    nodes, _, _ = block(0, top=True)
    return nodes


def _kind(value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _truth(value) -> bool:
    if value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, dict, tuple)):
        return bool(value)
    return True


def _go_float(value: float) -> str:
    """fmt's %v for a float64: %g with the shortest digits (8 -> 8, 1e6 -> 1e+06, 0.5 -> 0.5)."""
    if value == 0:
        return "0"
    digits = Decimal(repr(value)).normalize()
    count, point = len(digits.as_tuple().digits), digits.adjusted() + 1
    limit = count if 6 > count >= point else 6
    exponent = point - 1
    if exponent < -4 or exponent >= limit:
        mantissa = f"{digits.scaleb(-exponent):f}"
        return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
    return f"{digits:f}"


def _to_str(value) -> str:
    if value is None:
        return ""  # Helm turns Go's "<no value>" into nothing
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(_to_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_to_str(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _to_int(value) -> int:
    if value is None:
        return 0
    if isinstance(value, (bool, int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return 0
    raise TemplateError(f"cannot convert {value!r} to int")


def _compare(a, b) -> int:
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka not in ("int", "float", "string"):
        raise TemplateError(f"incompatible types for comparison: {ka} and {kb}")
    return (a > b) - (a < b)


def _eq(a, *others) -> bool:
    for b in others:
        ka, kb = _kind(a), _kind(b)
        if ka != kb or ka not in ("bool", "int", "float", "string"):
            raise TemplateError(f"incompatible types for comparison: {ka} and {kb}")
        if a == b:
            return True
    return False


def _empty(value) -> bool:
    return not _truth(value)


def _printf(fmt: str, *args) -> str:
    values = iter(args)

    def sub(match):
        verb = match.group(1)
        if verb == "%":
            return "%"
        value = next(values)
        if verb in "sv":
            return _to_str(value)
        if verb == "d":
            if _kind(value) != "int":
                return f"%!d({_kind(value)}={_to_str(value)})"
            return str(value)
        if verb == "q":
            return json.dumps(_to_str(value), ensure_ascii=False)
        raise TemplateError(f"printf verb %{verb} is not in the stand-in")

    return re.sub(r"%([%svdq])", sub, fmt)


def _index(collection, *keys):
    for key in keys:
        if collection is None:
            raise TemplateError("index of untyped nil")
        collection = collection.get(key) if isinstance(collection, dict) else collection[key]
    return collection


def _to_yaml(value) -> str:
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    return yaml.safe_dump(plain(value), default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(width: int, text: str) -> str:
    pad = " " * width
    return pad + text.replace("\n", "\n" + pad)


def _fail(message):
    raise TemplateError(message)


def _required(message, value):
    if value is None or value == "":
        raise TemplateError(message)
    return value


FUNCTIONS = {
    "toYaml": _to_yaml,
    "indent": _indent,
    "nindent": lambda width, text: "\n" + _indent(width, text),
    "quote": lambda *vs: " ".join(json.dumps(_to_str(v), ensure_ascii=False) for v in vs if v is not None),
    "default": lambda fallback, *given: fallback if not given or _empty(given[0]) else given[0],
    "empty": _empty,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": lambda a, b: _compare(a, b) < 0,
    "le": lambda a, b: _compare(a, b) <= 0,
    "gt": lambda a, b: _compare(a, b) > 0,
    "ge": lambda a, b: _compare(a, b) >= 0,
    "not": lambda v: not _truth(v),
    "int": _to_int,
    "add": lambda *vs: sum(_to_int(v) for v in vs),
    "sub": lambda a, b: _to_int(a) - _to_int(b),
    "len": lambda v: len(v),
    "printf": _printf,
    "trunc": lambda n, s: s[:n] if n >= 0 else s[n:],
    "trimSuffix": lambda suffix, s: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "replace": lambda old, new, s: s.replace(old, new),
    "contains": lambda sub, s: sub in s,
    "splitList": lambda sep, s: s.split(sep),
    "join": lambda sep, vs: sep.join(_to_str(v) for v in vs),
    "first": lambda vs: vs[0] if vs else None,
    "last": lambda vs: vs[-1] if vs else None,
    "required": _required,
    "fail": _fail,
    "b64enc": lambda s: base64.b64encode(_to_str(s).encode()).decode(),
    "randAlphaNum": lambda n: "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n)),
    "lookup": lambda *args: {},  # as under `helm template`: no cluster
    "index": _index,
    "dict": lambda *kv: dict(zip(kv[::2], kv[1::2])),
    "hasKey": lambda d, key: key in d,
    "toString": _to_str,
}


class GoTemplate:
    """Renders a chart's templates the way `helm template` does, for the subset above."""

    def __init__(self, chart: Path):
        self.chart = chart
        self.defines: dict[str, list] = {}
        self.files: dict[str, list] = {}
        for path in sorted((chart / "templates").iterdir()):
            if path.suffix in (".yaml", ".yml", ".tpl", ".txt"):
                self.files[path.name] = _parse(path.read_text(), self.defines)

    def render(self, values: dict, release: str = "test", namespace: str = "default") -> dict[str, str]:
        meta = yaml.safe_load((self.chart / "Chart.yaml").read_text())
        root = {
            "Values": values,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True},
            "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion")},
            "Capabilities": {},
            "Template": {},
        }
        out = {}
        for name, nodes in self.files.items():
            if name.startswith("_"):
                continue
            root["Template"] = {"Name": f"{meta['name']}/templates/{name}", "BasePath": f"{meta['name']}/templates"}
            out[name] = self._execute(nodes, root)
        return out

    def _execute(self, nodes, dot) -> str:
        out: list[str] = []
        self._walk(nodes, dot, [("$", dot)], out)
        return "".join(out)

    def _walk(self, nodes, dot, scope, out):
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                value = self._pipeline(node[1], dot, scope)
                if not node[1]["op"]:
                    out.append(_to_str(value))
            else:
                self._control(node, dot, scope, out)

    def _control(self, node, dot, scope, out):
        head, branches, otherwise = node
        mark = len(scope)
        try:
            if head == "range":
                ((pipe, body),) = branches
                collection = self._pipeline({**pipe, "decl": [], "op": None}, dot, scope)
                items = []
                if isinstance(collection, dict):
                    items = [(k, collection[k]) for k in sorted(collection)]
                elif isinstance(collection, list):
                    items = list(enumerate(collection))
                elif collection is not None:
                    raise TemplateError(f"range can't iterate over {collection!r}")
                for key, item in items:
                    inner = len(scope)
                    if len(pipe["decl"]) == 1:
                        scope.append((pipe["decl"][0], item))
                    elif len(pipe["decl"]) == 2:
                        scope.extend([(pipe["decl"][0], key), (pipe["decl"][1], item)])
                    self._walk(body, item, scope, out)
                    del scope[inner:]
                if not items and otherwise is not None:
                    self._walk(otherwise, dot, scope, out)
                return
            for pipe, body in branches:
                value = self._pipeline(pipe, dot, scope)
                if _truth(value):
                    self._walk(body, value if head == "with" else dot, scope, out)
                    return
            if otherwise is not None:
                self._walk(otherwise, dot, scope, out)
        finally:
            del scope[mark:]

    def _lookup(self, scope, name):
        for var, value in reversed(scope):
            if var == name:
                return value
        raise TemplateError(f"undefined variable {name}")

    def _fields(self, value, fields, where):
        for field in fields:
            if value is None:
                raise TemplateError(f"nil pointer evaluating interface {{}}.{field} ({where})")
            if not isinstance(value, dict):
                raise TemplateError(f"can't evaluate field {field} in {_kind(value)} ({where})")
            value = value.get(field)
        return value

    def _pipeline(self, pipe, dot, scope):
        value, first = None, True
        for cmd in pipe["cmds"]:
            value = self._command(cmd, dot, scope, None if first else (value,))
            first = False
        if pipe["op"] == ":=":
            for name in pipe["decl"]:
                scope.append((name, value))
        elif pipe["op"] == "=":
            for i in range(len(scope) - 1, -1, -1):
                if scope[i][0] == pipe["decl"][0]:
                    scope[i] = (scope[i][0], value)
                    break
            else:
                raise TemplateError(f"undefined variable {pipe['decl'][0]}")
        return value

    def _arg(self, arg, dot, scope):
        kind = arg[0]
        if kind == "lit":
            return arg[1]
        if kind == "field":
            return self._fields(dot, arg[1], "." + ".".join(arg[1]))
        if kind == "var":
            return self._fields(self._lookup(scope, arg[1]), arg[2], arg[1])
        if kind == "pipe":
            return self._pipeline(arg[1], dot, scope)
        if kind == "fn":
            return self._call(arg[1], [], dot, scope)
        raise TemplateError(f"bad argument {arg!r}")

    def _command(self, cmd, dot, scope, piped):
        head, rest = cmd[0], cmd[1:]
        if head[0] == "fn":
            if head[1] in ("and", "or"):  # Go evaluates these lazily
                args = [lambda a=a: self._arg(a, dot, scope) for a in rest]
                if piped:
                    args.append(lambda: piped[0])
                result = None
                for get in args:
                    result = get()
                    if _truth(result) != (head[1] == "and"):
                        return result
                return result
            args = [self._arg(a, dot, scope) for a in rest] + list(piped or ())
            return self._call(head[1], args, dot, scope)
        if rest or piped:
            raise TemplateError(f"can't give arguments to a non-function {head!r}")
        return self._arg(head, dot, scope)

    def _call(self, name, args, dot, scope):
        if name == "include":
            template, data = args
            if template not in self.defines:
                raise TemplateError(f'no template "{template}"')
            return self._execute(self.defines[template], data)
        if name not in FUNCTIONS:
            raise TemplateError(f"function {name!r} is not in the stand-in renderer")
        try:
            return FUNCTIONS[name](*args)
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(f"error calling {name}: {exc}") from exc


def _as_helm_values(value):
    """Values as Helm holds them after reading a values file: every number is a float64."""
    if isinstance(value, dict):
        return {k: _as_helm_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_helm_values(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def test_stand_in_renderer_basics():
    defines: dict = {}
    nodes = _parse(
        '{{- define "x" -}}<{{ .a }}>{{- end -}}'
        'a {{- /* c */ -}} b\n{{ include "x" . }} {{ if eq (int .n) 2 }}two{{ else if .z }}z{{ else }}no{{ end }}'
        "{{ range $i, $v := .l }}[{{ $i }}={{ $v | quote }}]{{ else }}none{{ end }}"
        '{{ $x := default "d" .missing }}{{ $x }} {{ .n }} {{ toYaml .m | nindent 2 }}',
        defines,
    )
    engine = GoTemplate.__new__(GoTemplate)
    engine.defines = defines
    out = engine._execute(nodes, {"a": 1, "n": 2.0, "l": ["p", "q"], "m": {"k": [1.0]}})
    assert out == 'ab\n<1> two[0="p"][1="q"]d 2 \n  k:\n  - 1'
    for bad in ("{{ eq .n 2 }}", "{{ .nope.deeper }}", "{{ frobnicate 1 }}", "{{ if .a }}"):
        with pytest.raises(TemplateError):
            engine._execute(_parse(bad, {}), {"n": 2.0, "a": 1})
    floats = [8.0, 1e6, 0.5, 1e21, 1e-05, 123456789.0, 100000.0, 2.5e-3]
    assert " ".join(map(_go_float, floats)) == "8 1e+06 0.5 1e+21 1e-05 1.23456789e+08 100000 0.0025"


# -- rendering the chart: real helm when installed, the stand-in always ----------------------------

RENDERERS = ["stand-in", "helm"]


def render_chart(renderer: str, overrides: dict | None = None, tmp_path: Path | None = None) -> list[dict]:
    """Every manifest the chart renders with `overrides` merged into values.yaml."""
    overrides = overrides or {}
    if renderer == "helm":
        helm = shutil.which("helm")
        if helm is None:
            pytest.skip("no helm binary on PATH: the chart is rendered by the stand-in only")
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(overrides))
        proc = subprocess.run(
            [helm, "template", "test", str(CHART), "--namespace", "default", "-f", str(values_file)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise TemplateError(proc.stderr.strip())
        text = proc.stdout
    else:
        defaults = yaml.safe_load((CHART / "values.yaml").read_text())
        rendered = GoTemplate(CHART).render(_as_helm_values(_merge(defaults, overrides)))
        text = "\n---\n".join(body for name, body in rendered.items() if name != "NOTES.txt")
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(params=RENDERERS)
def render(request, tmp_path):
    return lambda overrides=None: render_chart(request.param, overrides, tmp_path)


GROUPS = {
    "workers": [
        {"name": "cpu", "kind": "Deployment", "replicas": 2, "queues": ["cpu", "default"], "gpus": 0},
        {"name": "gpu1", "kind": "Deployment", "replicas": 3, "queues": ["single-gpu"], "gpus": 1},
        {
            "name": "gpu4",
            "kind": "DaemonSet",
            "queues": ["multi-gpu", "single-gpu"],
            "gpus": 4,
            "args": ["--mode", "venv"],
            "nodeSelector": {"nvidia.com/gpu.count": "4"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"memory": "128Gi"}},
            "runtimeClassName": "nvidia",
        },
    ],
    "services": {"enabled": True, "slots": 12, "queues": ["services"], "replicas": 1},
}


def _workloads(docs, component=None):
    return [
        d
        for d in docs
        if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")
        and (component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]


def _container(doc, name):
    return next(c for c in doc["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _cli_args(container) -> list[str]:
    """What the container runs after the image's `tini --`: the args to `trainyard`."""
    command = container.get("command")
    assert command[:2] == ["tini", "--"], command
    assert command[2:4] == ["sh", "-c"] and command[5] == "trainyard", command
    assert re.search(r'exec trainyard "\$@"$', command[4]), command[4]
    args = [str(a) for a in container["args"]]
    assert args[0] == "worker"
    return args[1:]


def test_chart_worker_groups(render):
    docs = render(GROUPS)
    workers = {d["metadata"]["labels"]["trainyard.dev/worker-group"]: d for d in _workloads(docs, "worker")}
    assert set(workers) == {"cpu", "gpu1", "gpu4"}
    expected_gpus = {"cpu": 0, "gpu1": 1, "gpu4": 4}
    for group, doc in workers.items():
        container = _container(doc, "worker")
        params = worker_params(_cli_args(container))
        limits = (container.get("resources") or {}).get("limits") or {}
        n = expected_gpus[group]
        if n:
            assert int(limits["nvidia.com/gpu"]) == n, group
            assert parse_gpu_spec(params["gpus"]) == list(range(n)), (group, params["gpus"])
            assert not params["cpu_only"]
        else:
            assert "nvidia.com/gpu" not in limits and params["cpu_only"] and params["gpus"] is None, group
        assert params["create_queue"]
        spec = doc["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["terminationGracePeriodSeconds"] >= 600, "SIGTERM drains: leave time for a task to end"
    assert workers["cpu"]["kind"] == "Deployment" and workers["cpu"]["spec"]["replicas"] == 2
    assert worker_params(_cli_args(_container(workers["cpu"], "worker")))["queues"] == ("cpu", "default")
    gpu4 = workers["gpu4"]
    assert gpu4["kind"] == "DaemonSet" and "replicas" not in gpu4["spec"]
    pod = gpu4["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.count": "4"} and pod["runtimeClassName"] == "nvidia"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    resources = _container(gpu4, "worker")["resources"]
    assert resources["requests"] == {"cpu": "8", "memory": "64Gi"}
    assert resources["limits"] == {"memory": "128Gi", "nvidia.com/gpu": 4}
    assert worker_params(_cli_args(_container(gpu4, "worker")))["mode"] == "venv"

    (services,) = _workloads(docs, "services")
    params = worker_params(_cli_args(_container(services, "worker")))
    assert params["services"] == 12 and params["queues"] == ("services",)


def test_chart_defaults(render):
    docs = render()
    for doc in _workloads(docs, "worker") + _workloads(docs, "services"):
        worker_params(_cli_args(_container(doc, "worker")))
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert ("StatefulSet", "test-trainyard-redis") in kinds and ("Secret", "test-trainyard-redis") in kinds
    redis = next(d for d in docs if d["kind"] == "StatefulSet")
    container = _container(redis, "redis")
    args = [str(a) for a in container["args"]]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]


def _env(container) -> list[dict]:
    return container.get("env") or []


def test_chart_password_only_through_secret_key_refs(render):
    password = "Sup3r-secret-pw"
    docs = render({**GROUPS, "redis": {"password": password}})
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert base64.b64decode(secret["data"]["redis-password"]).decode() == password
    others = [d for d in docs if d is not secret]
    assert password not in json.dumps(others), "the password shows outside the Secret"
    service = next(d for d in docs if d["kind"] == "Service")
    for doc in _workloads(docs):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            env = _env(container)
            names = [e["name"] for e in env]
            for entry in env:
                if "PASSWORD" in entry["name"] or entry["name"] == "REDISCLI_AUTH":
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], "redis-password")
                    assert "value" not in entry
            if doc["kind"] == "StatefulSet":
                continue
            url = next(e["value"] for e in env if e["name"] == "TRAINYARD_REDIS_URL")
            assert names.index("TRAINYARD_REDIS_PASSWORD") < names.index("TRAINYARD_REDIS_URL"), (
                "Kubernetes expands $(VAR) only from variables defined before"
            )
            assert url == f"redis://:$(TRAINYARD_REDIS_PASSWORD)@{service['metadata']['name']}:6379/0"
            parts = urlsplit(url.replace("$(TRAINYARD_REDIS_PASSWORD)", password))
            assert (parts.hostname, parts.port, parts.password) == (service["metadata"]["name"], 6379, password)
    assert service["spec"]["ports"][0]["port"] == 6379
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()


def test_chart_external_redis(render):
    docs = render(
        {
            "redis": {
                "bundled": {"enabled": False},
                "url": "rediss://redis.example.internal:6380/2",
                "username": "trainyard",
                "existingSecret": "team-redis",
                "existingSecretKey": "password",
            }
        }
    )
    assert not [d for d in docs if d["kind"] in ("StatefulSet", "Secret", "Service")]
    for doc in _workloads(docs):
        env = _env(_container(doc, "worker"))
        ref = env[0]["valueFrom"]["secretKeyRef"]
        assert (env[0]["name"], ref["name"], ref["key"]) == ("TRAINYARD_REDIS_PASSWORD", "team-redis", "password")
        url = next(e["value"] for e in env if e["name"] == "TRAINYARD_REDIS_URL")
        assert url == "rediss://trainyard:$(TRAINYARD_REDIS_PASSWORD)@redis.example.internal:6380/2"


def test_chart_external_redis_behind_sentinel(render):
    hosts = "sentinel-0:26379,sentinel-1:26379,sentinel-2:26379"
    docs = render({"redis": {"bundled": {"enabled": False}, "url": f"redis+sentinel://{hosts}/mymaster/0"}})
    for doc in _workloads(docs):
        env = _env(_container(doc, "worker"))
        url = next(e["value"] for e in env if e["name"] == "TRAINYARD_REDIS_URL")
        assert url == f"redis+sentinel://:$(TRAINYARD_REDIS_PASSWORD)@{hosts}/mymaster/0"


def test_chart_sentinel_with_a_replica_to_wait_for(render):
    hosts = "sentinel-0:26379,sentinel-1:26379,sentinel-2:26379"
    redis = {"bundled": {"enabled": False}, "url": f"redis+sentinel://{hosts}/mymaster/0", "waitReplicas": 1}
    docs = render({"redis": redis})
    workloads = _workloads(docs)
    assert len(workloads) >= 2  # the cpu group and the services worker
    for doc in workloads:
        env = {e["name"]: e for e in _env(_container(doc, "worker"))}
        assert env["TRAINYARD_REDIS_REPLICAS"]["value"] == "1"
        target = sentinel.parse(env["TRAINYARD_REDIS_URL"]["value"].replace("$(TRAINYARD_REDIS_PASSWORD)", "pw"))
        assert (target.service, target.password, len(target.sentinels)) == ("mymaster", "pw", 3)
    for doc in _workloads(render({})):  # by default no wait: a bundled Redis has no replica
        if doc["kind"] == "StatefulSet":
            continue  # the bundled Redis itself
        assert "TRAINYARD_REDIS_REPLICAS" not in {e["name"] for e in _env(_container(doc, "worker"))}


def test_chart_external_redis_needs_a_clean_url(render):
    with pytest.raises(TemplateError, match="redis.url is required"):
        render({"redis": {"bundled": {"enabled": False}}})
    with pytest.raises(TemplateError, match="must not hold credentials"):
        render({"redis": {"bundled": {"enabled": False}, "url": "redis://:pw@host:6379/0"}})


def test_chart_refuses_gpu_limits_in_resources(render):
    group = {"name": "g", "queues": ["q"], "gpus": 2, "resources": {"limits": {"nvidia.com/gpu": 2}}}
    with pytest.raises(TemplateError, match="set gpus instead"):
        render({"workers": [group]})


def test_chart_objects_are_well_formed(render):
    docs = render(GROUPS)
    dns = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
    names = set()
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"]
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and dns.fullmatch(name), name
        assert (doc["kind"], name) not in names, f"two {doc['kind']}s named {name}"
        names.add((doc["kind"], name))
    for doc in _workloads(docs):
        selector = doc["spec"]["selector"]["matchLabels"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), doc["metadata"]["name"]
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in _workloads(docs)]
    assert len(selectors) == len(set(selectors)), "two workloads would select each other's pods"


def test_chart_notes_render():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    notes = GoTemplate(CHART).render(_as_helm_values(_merge(defaults, GROUPS)))["NOTES.txt"]
    assert "gpu4: DaemonSet, queues multi-gpu,single-gpu, 4 GPU(s) per pod" in notes
    assert "up to 12 pipeline controllers" in notes


def test_worker_command_drops_the_bare_password(tmp_path):
    """The pod's command (less tini) keeps TRAINYARD_REDIS_URL but hides the password var from trainyard."""
    docs = render_chart("stand-in", GROUPS)
    container = _container(_workloads(docs, "worker")[0], "worker")
    stub = tmp_path / "bin" / "trainyard"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$OUT.args"\nenv > "$OUT.env"\n')
    stub.chmod(0o755)
    out = tmp_path / "out"
    env = {
        "PATH": f"{stub.parent}:{os.environ['PATH']}",
        "OUT": str(out),
        "TRAINYARD_REDIS_PASSWORD": "pw",
        "TRAINYARD_REDIS_URL": "redis://:pw@r:6379/0",
    }
    subprocess.run(container["command"][2:] + container["args"], env=env, check=True, timeout=30)
    assert out.with_suffix(".args").read_text().splitlines() == [str(a) for a in container["args"]]
    seen = dict(line.split("=", 1) for line in out.with_suffix(".env").read_text().splitlines() if "=" in line)
    assert "TRAINYARD_REDIS_PASSWORD" not in seen and seen["TRAINYARD_REDIS_URL"] == "redis://:pw@r:6379/0"


def test_helm_lint():
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("no helm binary on PATH")
    proc = subprocess.run([helm, "lint", str(CHART)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- systemd ----------------------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(shlex.split(value)) if value.startswith(("'", '"')) else value
    return values


def _seconds(span: str) -> float:
    if span == "infinity":
        return float("inf")
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", span):
        total += int(number) * units[unit]
    return total


def test_systemd_unit():
    unit = _unit()
    service = unit["Service"]
    assert service["EnvironmentFile"] == "/etc/trainyard/%i.env"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed", "only the worker gets SIGTERM; its tasks finish during the drain"
    assert service["Restart"] == "always"
    assert _seconds(service["TimeoutStopSec"]) >= 600
    assert service["User"] not in ("", "root", "0")
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(service["ExecStart"])
    assert argv[:2] == ["/usr/local/bin/trainyard", "worker"]
    assert argv[2:5] == ["--name", "%H-%i", "$WORKER_ARGS"]
    worker_args = shlex.split(_env_file(EXAMPLE_ENV)["WORKER_ARGS"])
    params = worker_params(["--name", "host-gpu0", *worker_args])
    assert params["name"] == "host-gpu0"


def test_systemd_example_env():
    env = _env_file(EXAMPLE_ENV)
    url = urlsplit(env["TRAINYARD_REDIS_URL"])
    assert url.scheme in ("redis", "rediss", "unix") and url.password
    worker_params(shlex.split(env["WORKER_ARGS"]))


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "trainyard-worker@test.service"
    # verify checks that ExecStart's program exists: point it at this machine's trainyard.
    trainyard = shutil.which("trainyard") or sys.executable
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/trainyard", trainyard))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and "trainyard-worker@test.service" in line and "EnvironmentFile" not in line
    ]
    assert not problems, "\n".join(problems)


# -- Dockerfile -------------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def test_dockerfile_static():
    instructions = _dockerfile()
    assert instructions[0] == ("ARG", "BASE=python:3.11-slim")
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    entrypoint = [json.loads(rest) for word, rest in instructions if word == "ENTRYPOINT"][-1]
    cmd = [json.loads(rest) for word, rest in instructions if word == "CMD"][-1]
    assert entrypoint == ["tini", "--", "trainyard"]
    assert cmd[0] == "worker"
    params = worker_params(cmd[1:])
    assert params["queues"] == ("default",) and params["cpu_only"]
    user = [rest for word, rest in instructions if word == "USER"][-1]
    user = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], user)
    assert user.split(":")[0] not in ("root", "0", ""), user
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    assert "TRAINYARD_HOME=/var/lib/trainyard" in env
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    for package in ("git", "util-linux", "tini"):
        assert re.search(rf"apt-get install[^&]*\b{package}\b", runs), package
    assert "useradd" in runs and "trainyard" in runs


def test_dockerfile_copies_every_package_folder():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    sources = {word for kind, rest in _dockerfile() if kind == "COPY" for word in rest.split()[:-1]}
    assert folders <= sources, f"not copied into the image: {sorted(folders - sources)}"
    assert {"pyproject.toml", "README.md"} <= sources


def _docker_base() -> str:
    return os.environ.get("TRAINYARD_DEPLOY_BASE_IMAGE", "python:3.11-slim")


@pytest.mark.docker
def test_dockerfile_builds_and_runs(redis_server):
    """Build the image (only when its base image is already here: there is no registry), run it,
    and drain a worker in it: `docker stop` (SIGTERM through tini) lets the running task finish.

    TRAINYARD_DEPLOY_BASE_IMAGE picks another local base, TRAINYARD_DEPLOY_BUILD_NETWORK the build's
    network (e.g. host, where the engine has no bridge); the build installs packages from apt and pip.
    """
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "version"], capture_output=True).returncode != 0:
        if os.environ.get("TRAINYARD_REQUIRE_DOCKER"):
            pytest.fail("TRAINYARD_REQUIRE_DOCKER is set but no Docker engine answers")
        pytest.skip("no Docker engine answers")
    base = _docker_base()
    if subprocess.run([docker, "image", "inspect", base], capture_output=True).returncode != 0:
        pytest.skip(f"base image {base} is not available locally and cannot be pulled here (no registry)")
    tag = "trainyard-worker:deploy-test"
    build = [docker, "build", "-f", str(DOCKERFILE), "-t", tag, "--build-arg", f"BASE={base}"]
    if os.environ.get("TRAINYARD_DEPLOY_BUILD_NETWORK"):
        build += ["--network", os.environ["TRAINYARD_DEPLOY_BUILD_NETWORK"]]
    proc = subprocess.run([*build, str(REPO)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = json.loads(
        subprocess.run([docker, "image", "inspect", tag], capture_output=True, text=True, check=True).stdout
    )[0]["Config"]
    assert config["Entrypoint"] == ["tini", "--", "trainyard"] and config["User"] not in ("", "root", "0")
    run = [docker, "run", "--rm", "--network", "none"]
    probe = subprocess.run(
        [*run, "--entrypoint", "sh", tag, "-c", "id -u; for c in git setpriv tini; do command -v $c; done"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    uid, *tools = probe.stdout.split()
    assert uid != "0" and len(tools) == 3
    helped = subprocess.run([*run, tag, "worker", "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--services-mode" in helped.stdout, helped.stderr

    # A worker in the image against this session's Redis (host network: the engine may have no bridge).
    from trainyard import Task

    name = f"trainyard-deploy-test-{secrets.token_hex(3)}"
    argv = ["worker", "--queue", "deploy-e2e", "--cpu-only", "--create-queue"]
    started = subprocess.run(
        [docker, "run", "-d", "--name", name, "--network", "host", "-e", f"TRAINYARD_REDIS_URL={redis_server.url}"]
        + [tag, *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    try:
        command = ["python3", "-c", "import time; time.sleep(4); print('finished')"]
        task = Task.create("drain-in-container", command=command).enqueue("deploy-e2e", create_queue=True)
        task.wait(timeout=60, statuses=["running"])
        stopped = subprocess.run([docker, "stop", "-t", "60", name], capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        state = subprocess.run(
            [docker, "inspect", name, "--format", "{{.State.ExitCode}}"], capture_output=True, text=True, timeout=30
        )
        assert state.stdout.strip() == "0", subprocess.run([docker, "logs", name], capture_output=True, text=True)
        assert task.refresh().status == "completed"
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=60)
