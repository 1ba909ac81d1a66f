"""The status endpoint under a flood (supervisor/observe/http_status.py): a cap on what it
serves at once, slow clients dropped, clients that went away no traceback, and accept() out
of descriptors neither spinning nor leaving connections waiting."""

from __future__ import annotations

import errno
import http.server
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from supervisor.observe import http_status
from supervisor.observe.http_status import (
    ACCEPT_BACKOFF_S,
    BUSY,
    ConnectionGate,
    StatusServer,
)
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def get(port: int, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:g}s"
        time.sleep(0.01)


def read_all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
    return data


def test_the_gate_lets_in_up_to_its_limit_and_counts_the_rest() -> None:
    gate = ConnectionGate(2)
    assert [gate.enter() for _ in range(4)] == [True, True, False, False]
    gate.leave()
    assert gate.enter() and not gate.enter()
    assert gate.active == 2 and gate.refused == 3


def test_connections_over_the_cap_are_refused_and_it_answers_once_they_close() -> None:
    server = StatusServer(0, max_connections=2, read_timeout_s=30)
    port = server.start()
    try:
        # Given two idle connections holding every slot
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        until(lambda: server.gate.active == 2, "both idle connections served")
        # When more come: each is answered 503 at once and closed, never queued
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as over:
                assert read_all(over) == BUSY
        assert server.gate.refused == 3 and server.gate.active == 2
        # Then, once the idle ones close, /healthz answers again
        for conn in idle:
            conn.close()
        until(lambda: server.gate.active == 0, "the idle connections' slots freed")
        code, health = get(port)
        assert code == 503 and health["connected"] is False  # nothing published: unhealthy
    finally:
        server.stop()


def test_a_client_that_never_sends_its_request_is_dropped_after_the_read_timeout() -> None:
    server = StatusServer(0, max_connections=1, read_timeout_s=0.3)
    port = server.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as silent:
            assert read_all(silent) == b""  # closed by the server, not by us
        until(lambda: server.gate.active == 0, "its slot freed")
        assert get(port)[0] == 503
    finally:
        server.stop()


def test_a_client_gone_mid_answer_is_counted_and_never_a_traceback(capsys, caplog) -> None:
    server = StatusServer(0)
    server.start()
    try:
        assert server._server is not None
        for gone in (
            BrokenPipeError(errno.EPIPE, "Broken pipe"),
            ConnectionResetError(errno.ECONNRESET, "reset"),
            TimeoutError(),
        ):
            try:
                raise gone
            except OSError:  # what socketserver does with a request that raised
                server._server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.stop()
    assert "Traceback" not in capsys.readouterr().err and not caplog.records
    assert server.gate.dropped == 3


class Starved:
    """A listening socket whose accept() fails with EMFILE ``fails`` times, then hands over
    ``waiting``."""

    def __init__(self, waiting: socket.socket, fails: int) -> None:
        self.waiting, self.fails, self.calls = waiting, fails, 0

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.calls <= self.fails:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.waiting, ("127.0.0.1", 1)


def test_out_of_descriptors_the_reserve_refuses_the_waiting_one_else_it_waits(monkeypatch):
    server = http_status._Server(
        ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler, ConnectionGate(4)
    )
    listening = server.socket
    sleeps: list[float] = []
    monkeypatch.setattr(http_status.time, "sleep", sleeps.append)
    try:
        ours, theirs = socket.socketpair()
        server.socket = Starved(ours, fails=1)  # type: ignore[assignment]
        # With its reserve: freed, the waiting connection accepted, refused, reserve taken back
        with pytest.raises(OSError):
            server.get_request()
        assert read_all(theirs) == BUSY and server.gate.refused == 1
        assert server._reserve is not None and sleeps == []
        # Without one (none left to open): a pause before the next select, never a spin
        server._release()
        monkeypatch.setattr(http_status, "_reserve", lambda: None)
        server.socket = Starved(ours, fails=9)  # type: ignore[assignment]
        with pytest.raises(OSError):
            server.get_request()
        assert sleeps == [ACCEPT_BACKOFF_S]
    finally:
        server.socket = listening
        server.server_close()
        theirs.close()


CHILD = """
import os, resource, sys, time
from supervisor.observe.http_status import StatusServer
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
server = StatusServer(0)
port = server.start()
hog = []
try:
    while True:
        hog.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
print(port, flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_a_process_out_of_descriptors_still_answers_each_connection() -> None:
    # Given a status server in a process that has used every descriptor it may have
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=REPO_ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        # When clients connect: each is refused at once (before: accept() failed with EMFILE
        # in a loop at 100 % CPU and they waited forever)
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                assert read_all(conn) == BUSY
    finally:
        child.kill()
        _, err = child.communicate(timeout=10)
    assert "Traceback" not in err
