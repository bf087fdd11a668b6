"""SourceCache: task code checked out from a per-host mirror cache, with real git repositories."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import shutil
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gitrepo import commit, git, make_repo

from trainyard.queues.gitinfo import inspect
from trainyard.queues.record import Script
from trainyard.worker.source import GitCredentials, SourceCache, SourceError

TOKEN = "s3cret-token"


class Recorder:
    """A ``log`` callable that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with two commits: (path, older commit, newer commit)."""
    repo = tmp_path / "project"
    old = make_repo(repo, {"train.py": "print('v1')\n", "lib/util.py": "X = 1\n"})
    new = commit(repo, {"lib/util.py": "X = 2\n"}, "second")
    return repo, old, new


def make_cache(tmp_path: Path, credentials: GitCredentials | None = None) -> tuple[SourceCache, Recorder]:
    log = Recorder()
    return SourceCache(tmp_path / "cache", log, credentials), log


def test_old_commit_with_uncommitted_diff(tmp_path, project):
    repo, old, _ = project
    (repo / "train.py").write_text("from lib.helper import Y\nprint('v2', Y)\n")
    (repo / "lib/helper.py").write_text("Y = 'new file'\n")
    info = inspect(repo)
    script = Script(repository=str(repo), branch="main", commit=old, diff=info.diff, entry_point="train.py")
    cache, log = make_cache(tmp_path)

    dest = cache.checkout(script, tmp_path / "run" / "code")

    assert dest == tmp_path / "run" / "code"
    assert (dest / "lib/util.py").read_text() == "X = 1\n"  # the old commit's content
    assert (dest / "train.py").read_text() == "from lib.helper import Y\nprint('v2', Y)\n"
    assert (dest / "lib/helper.py").read_text() == "Y = 'new file'\n"
    assert git(dest, "rev-parse", "HEAD") == old
    assert git(dest, "remote", "get-url", "origin") == str(repo)
    key = hashlib.sha256(str(repo).encode()).hexdigest()[:16]
    assert cache.mirror_path(str(repo)) == tmp_path / "cache" / f"{key}.git"
    assert log.count(f"source: cloning {repo} into the cache") == 1
    assert f"source: checked out {old[:10]}" in log.lines
    assert "source: applied uncommitted changes (2 files)" in log.lines


def test_second_checkout_is_a_cache_hit_without_fetch(tmp_path, project):
    repo, old, _ = project
    cache, log = make_cache(tmp_path)
    cache.checkout(Script(repository=str(repo), commit=old), tmp_path / "a")
    shutil.move(repo, tmp_path / "moved")  # any fetch would now fail
    log.lines.clear()

    dest = cache.checkout(Script(repository=str(repo), commit=old), tmp_path / "b")

    assert (dest / "lib/util.py").read_text() == "X = 1\n"
    assert f"source: cache hit ({old[:10]} already fetched)" in log.lines
    assert not log.count("fetching") and not log.count("cloning")


def test_new_commit_is_fetched_on_demand(tmp_path, project):
    repo, old, _ = project
    cache, log = make_cache(tmp_path)
    cache.checkout(Script(repository=str(repo), commit=old), tmp_path / "a")
    newest = commit(repo, {"lib/util.py": "X = 3\n"}, "third")

    dest = cache.checkout(Script(repository=str(repo), commit=newest), tmp_path / "b")

    assert (dest / "lib/util.py").read_text() == "X = 3\n"
    assert log.count(f"source: fetching {repo}") == 1 and log.count("cloning") == 1


def test_branch_tip_and_default_branch(tmp_path, project):
    repo, _, new = project
    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, {"lib/util.py": "X = 'feature'\n"}, "on feature")
    git(repo, "checkout", "-q", "main")
    cache, log = make_cache(tmp_path)

    assert git(cache.checkout(Script(repository=str(repo)), tmp_path / "a"), "rev-parse", "HEAD") == new
    tip = cache.checkout(Script(repository=str(repo), branch="feature"), tmp_path / "b")
    assert git(tip, "rev-parse", "HEAD") == feature
    assert log.count("fetching") == 1  # a branch tip is always refreshed
    with pytest.raises(SourceError, match=r"^branch nope does not exist in "):
        cache.checkout(Script(repository=str(repo), branch="nope"), tmp_path / "c")


def test_missing_commit(tmp_path, project):
    repo, old, _ = project
    cache, log = make_cache(tmp_path)
    cache.checkout(Script(repository=str(repo), commit=old), tmp_path / "a")
    ghost = "0123456789abcdef0123456789abcdef01234567"

    with pytest.raises(SourceError) as err:
        cache.checkout(Script(repository=str(repo), commit=ghost), tmp_path / "b")

    assert str(err.value) == f"commit 0123456789 does not exist in {repo}"
    assert log.count("fetching") == 1
    assert not (tmp_path / "b").exists()


def test_diff_that_no_longer_applies(tmp_path, project):
    repo, old, new = project
    (repo / "lib/util.py").write_text("X = 'edited'\n")  # recorded against "X = 2", the old commit has "X = 1"
    script = Script(repository=str(repo), commit=old, diff=inspect(repo).diff)
    cache, _ = make_cache(tmp_path)

    with pytest.raises(SourceError) as err:
        cache.checkout(script, tmp_path / "a")

    message = str(err.value)
    assert message.startswith(f"the recorded uncommitted diff no longer applies to {old[:10]}: ")
    assert "lib/util.py" in message and "\n" not in message
    assert not (tmp_path / "a").exists()
    dest = cache.checkout(script.model_copy(update={"commit": new}), tmp_path / "b")
    assert (dest / "lib/util.py").read_text() == "X = 'edited'\n"  # it does apply where it was recorded


@pytest.mark.parametrize("repository", ["/nonexistent/repo", "https://127.0.0.1:1/x.git"])
def test_unreachable_repository(tmp_path, repository):
    cache, log = make_cache(tmp_path)

    with pytest.raises(SourceError) as err:
        cache.checkout(Script(repository=repository, commit="a" * 40), tmp_path / "a")

    assert str(err.value).startswith(f"cannot fetch {repository}: ")
    assert "\n" not in str(err.value)
    assert not cache.mirror_path(repository).exists()


def test_credentials_from_env(monkeypatch):
    monkeypatch.delenv("TRAINYARD_GIT_USER", raising=False)
    monkeypatch.delenv("TRAINYARD_GIT_TOKEN", raising=False)
    assert GitCredentials.from_env() is None
    monkeypatch.setenv("TRAINYARD_GIT_USER", "alice")
    monkeypatch.setenv("TRAINYARD_GIT_TOKEN", TOKEN)
    creds = GitCredentials.from_env()
    assert creds == GitCredentials("alice", TOKEN)
    assert TOKEN not in repr(creds)


# -- a private repository over HTTP (git's "dumb" protocol) with Basic auth -------------------------


class AuthHandler(SimpleHTTPRequestHandler):
    """Serves a folder to alice:s3cret-token only."""

    expected = "Basic " + base64.b64encode(f"alice:{TOKEN}".encode()).decode()

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def private_repo(tmp_path: Path, project: tuple[Path, str, str]) -> Iterator[tuple[str, str]]:
    """(URL of a bare copy of ``project`` served with Basic auth, its newer commit)."""
    repo, _, new = project
    served = tmp_path / "served"
    bare = served / "private.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(bare, "update-server-info")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(AuthHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/private.git", new
    server.shutdown()
    server.server_close()


def test_private_repository_with_credentials(tmp_path, private_repo):
    url, new = private_repo
    cache, log = make_cache(tmp_path, GitCredentials("alice", TOKEN))

    dest = cache.checkout(Script(repository=url, commit=new), tmp_path / "a")

    assert (dest / "lib/util.py").read_text() == "X = 2\n"
    mirror = cache.mirror_path(url)
    assert git(mirror, "config", "--get", "remote.origin.url") == url
    for config in (mirror / "config", dest / ".git" / "config"):
        assert TOKEN not in config.read_text() and "alice" not in config.read_text()
    assert log.lines and not any(TOKEN in line for line in log.lines)


@pytest.mark.parametrize("credentials", [None, GitCredentials("alice", "wrong-token")])
def test_private_repository_refused_quickly(tmp_path, private_repo, credentials):
    url, new = private_repo
    cache, log = make_cache(tmp_path, credentials)
    started = time.monotonic()

    with pytest.raises(SourceError) as err:
        cache.checkout(Script(repository=url, commit=new), tmp_path / "a")

    assert time.monotonic() - started < 15
    assert str(err.value).startswith(f"cannot fetch {url}: ")
    assert "wrong-token" not in str(err.value) and not any("wrong-token" in line for line in log.lines)


def test_token_is_redacted_from_every_message(tmp_path):
    """A token that git echoes back (here: in the path) never reaches a log line or an error."""
    cache, log = make_cache(tmp_path, GitCredentials("alice", TOKEN))
    with pytest.raises(SourceError) as err:
        cache.checkout(Script(repository=f"/nonexistent/{TOKEN}/repo"), tmp_path / "a")
    assert (
        str(err.value) == "cannot fetch /nonexistent/***/repo: fatal: repository '/nonexistent/***/repo' does not exist"
    )
    assert log.lines == ["source: cloning /nonexistent/***/repo into the cache"]


def test_credentials_in_the_url_are_moved_out_of_it(tmp_path, private_repo):
    url, new = private_repo
    cache, log = make_cache(tmp_path)
    with_token = url.replace("http://", f"http://alice:{TOKEN}@")

    dest = cache.checkout(Script(repository=with_token, commit=new), tmp_path / "a")

    assert (dest / "lib/util.py").read_text() == "X = 2\n"
    assert cache.mirror_path(with_token) == cache.mirror_path(url)
    assert git(cache.mirror_path(url), "config", "--get", "remote.origin.url") == url
    assert TOKEN not in (cache.mirror_path(url) / "config").read_text()
    assert not any(TOKEN in line or "alice" in line for line in log.lines)


# -- concurrency: two processes, one clone ----------------------------------------------------------


def _checkout_in_child(root: str, repository: str, commit_id: str, dest: str, log_file: str, barrier) -> None:
    lines: list[str] = []
    barrier.wait(timeout=30)
    SourceCache(Path(root), lines.append).checkout(Script(repository=repository, commit=commit_id), Path(dest))
    Path(log_file).write_text("\n".join(lines))


@pytest.mark.timeout(60)
def test_two_processes_share_one_clone(tmp_path, project):
    repo, old, _ = project
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(
            target=_checkout_in_child,
            args=(str(tmp_path / "cache"), str(repo), old, str(tmp_path / f"w{i}"), str(tmp_path / f"log{i}"), barrier),
        )
        for i in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=45)

    assert [proc.exitcode for proc in procs] == [0, 0]
    logs = [(tmp_path / f"log{i}").read_text() for i in range(2)]
    assert sum(log.count("into the cache") for log in logs) == 1
    assert sum(log.count("cache hit") for log in logs) == 1  # the other one waited, then found it
    for i in range(2):
        assert (tmp_path / f"w{i}" / "lib/util.py").read_text() == "X = 1\n"
