"""A real HTTP server on 127.0.0.1 that answers from a script, for testing the health gate without Docker."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    delay: float = 0.0


def ok(version: str = "sha-1a2b3c4", **extra: str) -> Reply:
    return Reply(200, json.dumps({"status": "ok", "version": version, **extra}))


class Script:
    """Replies in order; the last one repeats. Counts the requests it served."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.served = 0
        self.lock = threading.Lock()

    def next(self) -> Reply:
        with self.lock:
            reply = self.replies[min(self.served, len(self.replies) - 1)]
            self.served += 1
            return reply


@contextmanager
def serve(script: Script, *, start_after: float = 0.0, port: int = 0) -> Iterator[str]:
    """Serve ``script`` on 127.0.0.1; with ``start_after`` the port refuses connections until then."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reply = script.next()
            time.sleep(reply.delay)
            data = reply.body.encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (its timeout), which is what some tests want

        def log_message(self, *_args: object) -> None:
            pass

    port = port or free_port()
    url = f"http://127.0.0.1:{port}/health"
    holder: dict[str, ThreadingHTTPServer] = {}
    ready = threading.Event()

    def run() -> None:
        time.sleep(start_after)
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        holder["server"] = server
        ready.set()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not start_after:
        ready.wait(5)
    try:
        yield url
    finally:
        ready.wait(start_after + 5)
        if "server" in holder:
            holder["server"].shutdown()
            holder["server"].server_close()


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port on 127.0.0.1 that is free now, below the kernel's ephemeral range (32768 and up by default), so
    the outgoing connections of the engine and the tests cannot take it before a container publishes it;
    never the same port twice in one run."""
    for _ in range(1000):
        port = random.randint(20000, 32000)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port on 127.0.0.1 between 20000 and 32000")


@contextmanager
def process(argv: list[str], ready: Callable[[], object], env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a real server (``argv``) for the block, entered once ``ready()`` stops raising (at most 5 s);
    stderr goes where pytest captures it."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                ready()
                break
            except Exception:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)
