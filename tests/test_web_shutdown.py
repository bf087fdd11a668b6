"""`trainyard web` stops on SIGTERM while live streams are open and events pour in.

It used to hang: the open server-sent-event streams only ended when the app's lifespan shutdown
closed them, which uvicorn runs after the connections have closed (or after cancelling them at
the graceful time-out), and the shutdown then waited without bound on the event reader it had
just cancelled. Under load that wait never ended.
"""

from __future__ import annotations

import http.client
import threading

from webserver import WebServer

from trainyard import Queue, Task
from trainyard.web import auth


def _open(port: int, path: str, token: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    assert response.status == 200
    response.readline()  # the stream is live: its first line arrived
    return response


def test_sigterm_with_open_streams_under_load_ends_the_server(conn, redis_server, tmp_path):
    Queue.create("q")
    watched = Task.create("watched", command=["true"])
    token, _ = auth.create_token(conn, "alice", "read")
    for round_ in range(3):  # the hang did not come every time
        server = WebServer({"TRAINYARD_REDIS_URL": redis_server.url}, tmp_path / f"web{round_}").start()
        streams = []
        for _ in range(5):
            streams.append(_open(server.port, "/api/events", token))
            streams.append(_open(server.port, f"/api/tasks/{watched.id}/stream", token))
        stop = threading.Event()

        def churn(done=stop) -> None:  # events as fast as one client can make them
            while not done.is_set():
                Task.create("churn", command=["true"]).enqueue("q").dequeue()

        loader = threading.Thread(target=churn)
        loader.start()
        try:
            for stream in streams[:2]:
                stream.readline()  # events are flowing to the open streams
            server.proc.terminate()
            code = server.proc.wait(timeout=60)  # a hang guard, not a speed limit
        finally:
            stop.set()
            loader.join()
            server.stop()
        assert code in (0, -15), server.stderr()
        for stream in streams:
            stream.close()
