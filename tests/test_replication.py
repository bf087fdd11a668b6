"""What a lost reply or a failover does to a task change (issue 17, Redis that fails over): a
change is acknowledged only once the replica has every earlier write, whichever pooled connection
waits; a change whose reply was lost is not taken twice (a start whose reply was lost used to drop
the task's claim and leave it running forever); a running task without a claim is claimed again
so that the reaper judges it."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading

import pytest
import redis
from sentinel_cluster import PASSWORD, Cluster, until

from trainyard import Queue, Task, TaskStatus
from trainyard.connection import reset_connections
from trainyard.queues import keys, reaper
from trainyard.queues.backend import records
from trainyard.queues.dispatch import Dispatcher
from trainyard.queues.record import TaskRecord


class ReplyEater:
    """A TCP proxy in front of Redis that, once armed, forwards the next ``EXEC`` and drops the
    connection instead of handing back its reply: the transaction happened, the client never hears."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.armed = threading.Event()
        self.eaten = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            exec_sent = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, exec_sent), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, exec_sent), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, exec_sent: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed.is_set() and b"EXEC" in data:
                    self.armed.clear()
                    exec_sent.set()
                upstream.sendall(data)

    def _down(self, upstream: socket.socket, client: socket.socket, exec_sent: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if exec_sent.is_set():
                    self.eaten.set()
                    for sock in (client, upstream):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                client.sendall(data)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def eater(redis_server):
    proxy = ReplyEater(redis_server.port)
    try:
        yield proxy
    finally:
        proxy.close()


def _claimed_task(conn: redis.Redis, queue: str) -> Task:
    Queue.create(queue)
    task = Task.create("lost-reply", "replication", command=["true"])
    task.enqueue(queue)
    return task


def test_a_start_whose_reply_was_lost_is_started_once_and_keeps_its_claim(conn, redis_server, eater):
    task = _claimed_task(conn, "lost")
    client = redis.Redis(port=eater.port, password=redis_server.password)  # redis-py retries a broken link
    dispatcher = Dispatcher(client, "w-lost", "h1")
    claimed = dispatcher.claim_head("lost", task.id)
    assert claimed
    eater.armed.set()
    record = dispatcher.start(claimed, [])
    assert eater.eaten.is_set()  # the start's transaction ran, and its reply never came back
    assert record is not None and record.status == TaskStatus.RUNNING  # the worker runs it ...
    stored = Task.get(task.id)
    assert (stored.status, stored.runtime.attempt, len(stored.runtime.attempts)) == (TaskStatus.RUNNING, 1, 1)
    claim = conn.hget(keys.CLAIMS, task.id)  # ... and holds its claim, so a reaper can judge it
    assert claim is not None and json.loads(claim)["worker"] == "w-lost"


def test_a_running_task_without_a_claim_is_claimed_again_then_reaped_when_nobody_runs_it(conn):
    Queue.create("orphans")
    task = Task.create("orphan", "replication", command=["true"], retries=1)
    task.enqueue("orphans")
    dispatcher = Dispatcher(conn, "w-gone", "h1")
    claimed = dispatcher.claim_head("orphans", task.id)
    assert claimed and dispatcher.start(claimed, [])
    conn.hdel(keys.CLAIMS, task.id)  # what a failover leaves when the claim's write was lost, the start kept

    assert reaper.adopt_unclaimed(conn) == [task.id]  # claimed again in its worker's name, stamped now
    claim = json.loads(conn.hget(keys.CLAIMS, task.id))
    assert (claim["worker"], claim["host"], claim["queue"]) == ("w-gone", "h1", "orphans")
    assert Task.get(task.id).status == TaskStatus.RUNNING

    conn.hdel(keys.CLAIMS, task.id)
    done = reaper.reap(conn, dead_after=0)  # a pass claims it again, and nobody refreshes it: reaped
    assert [(d.task_id, d.outcome) for d in done] == [(task.id, "requeued")]
    assert Task.get(task.id).status == TaskStatus.QUEUED


def test_a_finish_of_a_start_that_a_failover_lost_leaves_the_task_to_the_reaper(conn):
    """Without TRAINYARD_REDIS_REPLICAS a failover can lose a start the worker acted on: the new
    primary has the task queued under this worker's claim (popped from its queue). The worker's
    finish is refused; it must not drop that claim, the only thing that still accounts for the task."""
    Queue.create("unstarted")
    task = Task.create("unstarted", "replication", command=["true"])
    task.enqueue("unstarted")
    dispatcher = Dispatcher(conn, "w-ran", "h1")
    assert dispatcher.claim_head("unstarted", task.id)  # the claim survived, the start did not
    assert dispatcher.finish(task.id, "completed", exit_code=0, attempt=1) is None
    assert json.loads(conn.hget(keys.CLAIMS, task.id))["worker"] == "w-ran"
    done = reaper.reap(conn, dead_after=0)
    assert [(d.task_id, d.outcome) for d in done] == [(task.id, "returned")]
    assert Task.get(task.id).status == TaskStatus.QUEUED
    assert conn.lrange("rq:queue:unstarted", 0, -1) == [task.id.encode()]  # back in its queue: it runs again


def test_a_claim_held_by_a_live_worker_is_never_replaced(conn):
    Queue.create("held")
    task = Task.create("held", "replication", command=["true"])
    task.enqueue("held")
    dispatcher = Dispatcher(conn, "w-live", "h1")
    claimed = dispatcher.claim_head("held", task.id)
    assert claimed and dispatcher.start(claimed, [])
    before = conn.hget(keys.CLAIMS, task.id)
    assert reaper.adopt_unclaimed(conn) == []
    assert conn.hget(keys.CLAIMS, task.id) == before


@pytest.fixture
def pair(tmp_path):
    found = Cluster(tmp_path / "pair").start_servers()
    try:
        yield found
    finally:
        found.stop()


def test_a_change_is_acknowledged_only_once_the_replica_has_every_earlier_write(pair, monkeypatch):
    monkeypatch.setenv("TRAINYARD_REDIS_REPLICAS", "1")
    monkeypatch.setattr(records, "REPLICA_WAIT_MS", 300)
    writer, waiter = pair.client("primary"), pair.client("primary")  # two connections, as a pool's threads have
    assert records.replicated(waiter)
    pair.procs["replica"].send_signal(signal.SIGSTOP)
    try:
        writer.set("written-elsewhere", "1")  # the replica cannot have this one
        assert not records.replicated(waiter)  # WAIT on another connection must still cover it
    finally:
        pair.procs["replica"].send_signal(signal.SIGCONT)
    monkeypatch.setattr(records, "REPLICA_WAIT_MS", 30_000)
    assert records.replicated(waiter)
    assert pair.client("replica").get("written-elsewhere") == b"1"


def test_with_no_replica_connected_a_change_does_not_wait_for_one(pair, monkeypatch):
    monkeypatch.setenv("TRAINYARD_REDIS_REPLICAS", "1")
    monkeypatch.setattr(records, "REPLICA_WAIT_MS", 600_000)  # a WAIT would hold the connection for nothing
    primary = pair.client("primary")
    pair.kill("replica")
    until(lambda: primary.info("replication")["connected_slaves"] == 0, "the primary to see its replica gone")
    waits = primary.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
    assert not records.replicated(primary)  # not acknowledged by a replica ...
    assert primary.info("commandstats").get("cmdstat_wait", {}).get("calls", 0) == waits  # ... and no WAIT sent


class FailingOverProxy:
    """A TCP proxy that forwards to one server until the first command batch holding ``WAIT``
    after ``arm()``: that batch is dropped with its link, and from then on new connections go to
    ``then_port``, as a Sentinel client finds the promoted server after a failover."""

    def __init__(self, port: int, then_port: int):
        self.target, self.then_port = port, then_port
        self.armed, self.switched = threading.Event(), threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if from_client and self.armed.is_set() and b"WAIT" in data:
                    self.armed.clear()
                    self.target = self.then_port
                    self.switched.set()
                    break
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_wait_confirmed_by_the_promoted_server_does_not_acknowledge_a_change_it_lacks(tmp_path, monkeypatch):
    """The primary takes a start, its replica is too slow to have it, and the link drops while the
    worker waits: redis-py retries the wait on the server promoted meanwhile, whose own replica
    confirms at once. The start is not there, so the worker must not act on it before taking it
    again where it now lives."""
    old = Cluster(tmp_path / "old").start_servers()  # the primary that dies, and its lagging replica
    new = Cluster(
        tmp_path / "new"
    ).start_servers()  # the promoted server (a copy from before the start), and its replica
    proxy = None
    try:
        monkeypatch.setenv("TRAINYARD_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:{old.primary}/0")
        monkeypatch.setenv("TRAINYARD_REDIS_REPLICAS", "1")
        reset_connections()
        Queue.create("failing-over")
        task = Task.create("failing-over", "replication", command=["true"])
        task.enqueue("failing-over")
        promoted = new.client("primary")
        promoted.replicaof("127.0.0.1", old.primary)  # the promoted server holds everything up to here
        until(lambda: promoted.exists(keys.task(task.id)) and promoted.llen("rq:queue:failing-over") == 1, "the copy")
        promoted.replicaof("NO", "ONE")
        until(lambda: promoted.info("replication")["connected_slaves"] == 1, "the promoted server's replica")

        proxy = FailingOverProxy(old.primary, new.primary)
        worker = redis.Redis(port=proxy.port, password=PASSWORD)  # redis-py retries a broken link
        dispatcher = Dispatcher(worker, "w-fo", "h1")
        claimed = dispatcher.claim_head("failing-over", task.id)
        assert claimed
        old.procs["replica"].send_signal(signal.SIGSTOP)  # the old replica never gets the start
        proxy.arm()
        record = dispatcher.start(claimed, [])
        assert proxy.switched.is_set()  # the wait went to the promoted server
        assert record is not None
        held = TaskRecord.from_json(promoted.get(keys.task(task.id)))
        assert (held.status, held.runtime.worker, held.runtime.attempt) == (TaskStatus.RUNNING, "w-fo", 1)
    finally:
        if proxy is not None:
            proxy.close()
        old.stop()
        new.stop()
        reset_connections()
