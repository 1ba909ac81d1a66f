"""The faults ``chaos`` makes outside the processes it signals: local endpoints that hang or
listen, a descriptor flood on the status port, a journal taken away under the running bot.

    SilentEndpoint    127.0.0.1 TCP server that accepts and never answers (the alert webhook:
                      a hanging channel for the whole run)
    PingCounter       127.0.0.1 HTTP server counting requests (the heartbeat channel: does it
                      still get its pings beside the hanging one?)
    Flood(port, n)    n idle connections to the status port, held until released
    take_journal(...) the journal file linked aside (the bot's later writes land there too,
                      so nothing it wrote is lost to the check), then deleted or replaced by
                      an earlier backup
"""

from __future__ import annotations

import http.server
import os
import socket
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class SilentEndpoint:
    """Accepts every connection, reads nothing, answers nothing, closes nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hook"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class _Count(http.server.BaseHTTPRequestHandler):
    counter: PingCounter

    def _answer(self) -> None:
        self.counter.times.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - its signature
        pass


class PingCounter:
    def __init__(self) -> None:
        handler = type("Count", (_Count,), {"counter": self})
        self.server = http.server.ThreadingHTTPServer((HOST, 0), handler)
        self.port = int(self.server.server_address[1])
        self.times: list[float] = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/ping"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Flood:
    """Up to ``count`` idle connections to ``port``, opened by a thread within ``open_s``
    (a server that takes them slowly is not waited for), held until ``release()``."""

    def __init__(self, port: int, count: int, open_s: float = 5.0) -> None:
        self.held: list[socket.socket] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._open, args=(port, count, open_s), daemon=True)
        self._thread.start()

    def _open(self, port: int, count: int, open_s: float) -> None:
        deadline = time.monotonic() + open_s
        while len(self.held) < count and time.monotonic() < deadline and (not self._stop.is_set()):
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect((HOST, port))
            except OSError:
                s.close()
                self.failed += 1
                continue
            self.held.append(s)

    def release(self) -> int:
        """Close them all; how many were open."""
        self._stop.set()
        self._thread.join(10)
        for s in self.held:
            s.close()
        return len(self.held)


def healthz(port: int, timeout_s: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=timeout_s) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def answers(port: int, within_s: float = 15.0) -> bool:
    """/healthz answers 200 within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if healthz(port):
            return True
        time.sleep(0.5)
    return False


def backup(journal: Path, to: Path) -> bool:
    """A consistent copy of the journal as it is now (SQLite's backup API, read only)."""
    if not journal.exists():
        return False
    src = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    tmp = to.with_name(to.name + ".tmp")
    tmp.unlink(missing_ok=True)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
    except sqlite3.Error:
        return False
    finally:
        dst.close()
        src.close()
    tmp.replace(to)
    return True


def take_journal(journal: Path, aside: Path, replacement: Path | None) -> bool:
    """Link the journal aside (the same file: what the bot still writes into it is kept),
    then delete it from its path, or put ``replacement`` (a copy of it) there instead."""
    if not journal.exists():
        return False
    os.link(journal, aside)
    if replacement is None:
        journal.unlink()
    else:
        copy = journal.with_name(journal.name + ".replacement")
        copy.write_bytes(replacement.read_bytes())
        copy.replace(journal)
    return True


def keep_wal(journal: Path, aside: Path) -> None:
    """Once the bot that had the journal taken away has stopped: a copy of the WAL at the
    path beside the file linked aside. SQLite checkpoints nothing into a file moved under it,
    so what the bot wrote meanwhile is only there (and a start on an empty file deletes it)."""
    wal = journal.with_name(journal.name + "-wal")
    if wal.exists():
        aside.with_name(aside.name + "-wal").write_bytes(wal.read_bytes())
