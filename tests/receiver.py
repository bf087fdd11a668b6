"""A real HTTP receiver on loopback that keeps every JSON message posted to it (Apprise's json://)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """``url`` is an Apprise ``json://`` URL pointing here; ``messages`` what arrived, in order."""

    def __init__(self, status: int = 200):
        self.messages: list[dict] = []
        self.status = status
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code = outer.status
                if code == 200:
                    with outer._cond:
                        outer.messages.append(json.loads(body))
                        outer._cond.notify_all()
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook"

    def wait_for(self, predicate, timeout: float = 60) -> list[dict]:
        """Until ``predicate(messages)`` holds (woken by each arrival); returns the messages."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver: condition not met in {timeout}s; got {self.messages[-5:]}")
                self._cond.wait(left)
            return list(self.messages)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
