"""The status endpoint on 127.0.0.1 (``monitoring.http_port``; 0 = off, the default;
``monitoring.bind`` another address, only with a control token: common/config.py).

    supervisor loop --publish(Status) after every cycle and every second--> StatusServer
        GET /         the dashboard (observe/dashboard.py: index.html, /static/app.js|css,
                      GET /api/state polled by the page); reads only. Bound beyond
                      loopback, /api/state (positions, P&L) needs the control token as
                      Authorization: Bearer (401 otherwise, counted on /metrics as
                      ibkr_bot_state_refused_total); the page and its assets hold no data
        GET /healthz  JSON: state, connected, last cycle age, kill switch, paused (HTTP 503
                      when unhealthy: also while waiting for the gateway)
        GET /metrics  Prometheus text (prometheus_client): counters, the cycle-time
                      histogram and gauges (supervisor/observe/exposition.py), process_*
        POST /api/pause|resume|flatten|kill  the trader's controls, with a bearer token
                      (``control``: set by runtime/controls.py, which hands them to the loop)

The server runs on its own thread and only reads the last published Status (a frozen
dataclass replaced whole), so a slow or hostile scraper never touches the loop's state.

Nor can a flood of connections take the supervisor's file descriptors (its workers' pipes
need them): at most MAX_CONNECTIONS are served at once (one thread each), the next ones get
a 503 and are closed at once; a client silent for READ_TIMEOUT_S is dropped; a client that
went away is not an error (no traceback). Should accept() still fail for want of descriptors
(EMFILE: the process is at its limit for another reason), a reserve descriptor is freed to
accept and close the waiting connection, so the server thread never spins on it.
"""

from __future__ import annotations

import errno
import hmac
import http.server
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from supervisor.observe.dashboard import ASSETS as ASSETS_KIND
from supervisor.observe.dashboard import CSP, Dashboard, DayState, asset
from supervisor.observe.exposition import CycleTotals, StatusCollector

HOST = "127.0.0.1"  # the default: the endpoint says what the account is doing
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
STALE_AFTER_S = 600.0  # /healthz: a cycle older than this (market open) is unhealthy
MAX_CONNECTIONS = 16  # served at once: a scraper or two and a person with curl
READ_TIMEOUT_S = 5.0  # a request not sent (or an answer not read) within this: dropped
ACCEPT_BACKOFF_S = 0.1  # accept() out of descriptors and no reserve left: waited, not spun
BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n"
)
GONE = (ConnectionError, TimeoutError)  # a client that went away or stalled: no error

log = logging.getLogger(__name__)


class StatusPortError(Exception):
    """monitoring.http_port cannot be served (in use, not allowed): said, exit 2."""


@dataclass(frozen=True)
class Status:
    state: str = "starting"  # starting | waiting for gateway | trading
    connected: bool = False
    market_open: bool = False
    halted: bool = False
    halted_reason: str = ""
    cycles: int = 0
    last_cycle_mono: float | None = None  # time.monotonic() of the last cycle's end
    cycle_seconds: float | None = None
    symbols_ok: int = 0
    symbols_failed: int = 0
    symbols_skipped: int = 0
    open_positions: int = 0
    day_pnl: float | None = None
    broker: dict[str, float] = field(default_factory=dict)
    totals: CycleTotals = CycleTotals()  # every cycle so far: the counters and the histogram
    processes: tuple[tuple[str, int], ...] = ()  # (supervisor | worker-N, pid): RSS per role
    paused: bool = False  # the trader's pause: new entries refused (trading/controls.py)
    session_ts: float | None = None  # the session clock (a sim's is pinned)
    next_open_ts: float | None = None  # the next regular open, while the market is closed

    def health(self, now_mono: float) -> dict[str, Any]:
        age = None if self.last_cycle_mono is None else round(now_mono - self.last_cycle_mono, 1)
        stale = self.market_open and (age is None or age > STALE_AFTER_S)
        healthy = self.connected and not stale
        return {
            "healthy": healthy,
            "state": self.state,
            "connected": self.connected,
            "market_open": self.market_open,
            "last_cycle_age_s": age,
            "cycles": self.cycles,
            "kill_switch": self.halted,
            "kill_switch_reason": self.halted_reason,
            "paused": self.paused,
        }


class ConnectionGate:
    """Connections being served, at most ``limit``; what was refused or dropped, counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.refused = 0  # over the limit (or shed for want of descriptors): 503, closed
        self.dropped = 0  # went away or stalled mid-request
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                self.refused += 1
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)

    def shed(self) -> None:
        with self._lock:
            self.refused += 1

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1


class StatusServer:
    """Serves the last published Status; ``start()`` binds, ``stop()`` closes."""

    def __init__(
        self,
        port: int,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout_s: float = READ_TIMEOUT_S,
        host: str = HOST,
        day_state: DayState | None = None,
        token: str | None = None,
    ) -> None:
        self.port = port
        self.host = host
        # bound beyond loopback, GET /api/state needs "Bearer <token>" (monitoring.control_token;
        # the settings refuse such a bind without one; None there: the state is never served)
        self._expected = f"Bearer {token}".encode() if token else None
        self.state_needs_token = not ipaddress.ip_address(host).is_loopback
        self.state_refused = 0  # GET /api/state without the right token (401)
        self._refused_lock = threading.Lock()
        # GET /api/state: the live Status and the journal's day (journal/dashboard_rows.py)
        self.dashboard = Dashboard(day_state)
        self.gate = ConnectionGate(max_connections)
        self.read_timeout_s = read_timeout_s
        self._status = Status()
        self._server: _Server | None = None
        # POST /api/<action>: (action, Authorization, X-Control-Source, peer) -> (code, JSON)
        # (runtime/controls.py: the token checked, the control handed to the loop)
        self.control: Callable[[str, str, str, str], tuple[int, bytes]] | None = None
        # one registry for the server's life: the counters' Monotonic state lives in it
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(
            StatusCollector(
                lambda: self._status,
                lambda: (self.gate.refused, self.gate.dropped),
                _rss_bytes,
                self._age_s,
            )
        )
        self._registry.register(_StateRefused(self))
        ProcessCollector(registry=self._registry)  # process_* of the supervisor
        PlatformCollector(registry=self._registry)  # python_info
        GCCollector(registry=self._registry)  # python_gc_*

    def publish(self, status: Status) -> None:
        self._status = status  # one reference swap: the reader sees the old or the new
        self.dashboard.trail.add(status)  # the day's P&L curve, kept while the bot runs

    def start(self) -> int:
        handler = _handler(self)
        try:
            self._server = _Server((self.host, self.port), handler, self.gate)
        except OSError as exc:
            raise StatusPortError(
                f"monitoring.http_port {self.port}: cannot listen on {self.host}: "
                f"{exc.strerror or exc}"
            ) from None
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="http-status", daemon=True).start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def health(self) -> dict[str, Any]:
        return self._status.health(time.monotonic())

    def metrics(self) -> bytes:
        return bytes(generate_latest(self._registry))

    def page(
        self, path: str, host_header: str, authorization: str = "", peer: str = ""
    ) -> tuple[int, str, bytes]:
        """GET of one of PAGES: (HTTP status, content type, body)."""
        if not self.host_allowed(host_header):
            return 403, "text/plain", b"the dashboard answers to 127.0.0.1 only\n"
        if path == "/api/state":
            if not self.state_allowed(authorization, peer):
                error = (
                    b'{"error": "beyond loopback the state needs Authorization: Bearer <token>"}'
                )
                return 401, "application/json", error + b"\n"
            return 200, "application/json", self.dashboard.state(self._status, _rss_bytes)
        return 200, ASSETS_KIND[PAGES[path]], asset(PAGES[path])

    def state_allowed(self, authorization: str, peer: str) -> bool:
        """Bound to loopback, the state is this machine's to read; beyond it, the positions
        and the P&L go over the network only to whoever holds the control token."""
        if not self.state_needs_token:
            return True
        if self._expected is not None and hmac.compare_digest(
            authorization.encode(), self._expected
        ):
            return True
        with self._refused_lock:
            self.state_refused += 1
            refused = self.state_refused
        if refused == 1 or refused % 100 == 0:  # an open page without it would log each poll
            log.warning(
                "GET /api/state from %s refused: wrong or missing token (%d so far)",
                peer,
                refused,
                extra={"event": "state_refused", "peer": peer},
            )
        return False

    def host_allowed(self, host_header: str) -> bool:
        """Bound to loopback, a page is served only to a Host naming loopback: a web page
        elsewhere cannot rebind its own name to 127.0.0.1 and read the account through
        the visitor's browser. Bound to another address, it was asked for (with a token)."""
        if not ipaddress.ip_address(self.host).is_loopback:
            return True
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return name in (*LOOPBACK, self.host)

    def add_collector(self, collector: Collector) -> None:
        """More families on /metrics (runtime/controls.py: the controls refused)."""
        self._registry.register(collector)

    def _age_s(self, status: Status) -> float | None:
        if status.last_cycle_mono is None:
            return None
        return time.monotonic() - status.last_cycle_mono


class _StateRefused(Collector):
    """``ibkr_bot_state_refused_total``: GET /api/state refused for its token."""

    def __init__(self, server: StatusServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "ibkr_bot_state_refused",
            "GET /api/state refused (401): bound beyond loopback, a wrong or missing token",
            value=self.server.state_refused,
        )


def reachable(bind: str) -> str:
    """Where a client on this machine finds a server bound to ``bind`` (``monitoring.bind``):
    every interface includes loopback; any other address is itself."""
    return HOST if bind == "0.0.0.0" else bind


def _rss_bytes(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None  # a worker gone between the publish and the scrape


class _Server(http.server.ThreadingHTTPServer):
    """A thread per connection, at most ``gate.limit`` at once; quiet about clients that
    went away; never spinning on an accept() that fails for want of descriptors."""

    daemon_threads = True
    request_queue_size = 64  # a burst waits in the kernel, not in SYN retries

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[http.server.BaseHTTPRequestHandler],
        gate: ConnectionGate,
    ) -> None:
        self.gate = gate
        self._reserve: int | None = _reserve()
        self._starved = False
        try:
            super().__init__(address, handler)
        except OSError:
            self._release()
            raise

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = self.socket.accept()
        except OSError as exc:  # socketserver drops it and selects again: at once
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._shed(exc)
            raise
        self._starved = False
        return request

    def _shed(self, exc: OSError) -> None:
        """Out of descriptors: the reserve is freed to accept the waiting connection and
        refuse it (it would be readable again at once, a spin); without a reserve, a pause."""
        if not self._starved:
            self._starved = True
            log.warning(
                "status endpoint: %s; connections refused until descriptors are free",
                exc.strerror,
                extra={"event": "http_status_starved"},
            )
        if self._reserve is None:
            self._reserve = _reserve()
        accepted = False
        if self._reserve is not None:
            os.close(self._reserve)
            try:
                conn, _ = self.socket.accept()
                self.gate.shed()
                _refuse(conn)
                accepted = True
            except OSError:
                pass
            self._reserve = _reserve()
        if not accepted:
            time.sleep(ACCEPT_BACKOFF_S)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.gate.enter():
            _refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: it never leaves by itself
            self.gate.leave()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.gate.leave()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, GONE):  # the client went away or stalled: its loss only
            self.gate.drop()
            return
        log.exception("status endpoint: a request failed", extra={"event": "http_status_error"})

    def server_close(self) -> None:
        super().server_close()
        self._release()

    def _release(self) -> None:
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None


def _reserve() -> int | None:
    """A spare descriptor, given up when accept() finds none; None when none is left."""
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def _refuse(conn: socket.socket) -> None:
    """503 if the socket takes it at once (never waited for), then closed."""
    try:
        conn.setblocking(False)
        conn.send(BUSY)
    except OSError:
        pass
    finally:
        conn.close()


# GET path -> the asset it serves (or the state): nothing else of the disk is reachable
PAGES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/static/app.js": "app.js",
    "/static/app.css": "app.css",
    "/api/state": "",
}
# POST only (controls.ACTIONS, above this layer): a GET is told so (405), not "not found"
CONTROL_PATHS = frozenset(f"/api/{a}" for a in ("pause", "resume", "flatten", "kill"))


def _not_a_page(path: str) -> tuple[int, str, bytes]:
    """A GET of no page: a control is POST only (405, sent with Allow: POST), else 404."""
    if path in CONTROL_PATHS:
        return 405, "text/plain", f"{path} is POST only\n".encode()
    return 404, "text/plain", b"try /, /healthz or /metrics\n"


def _handler(server: StatusServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = server.read_timeout_s  # a slow or silent client holds a slot this long

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = self.path.split("?")[0]
            if path in PAGES:
                host, auth = self.headers.get("Host", ""), self.headers.get("Authorization", "")
                peer = f"{self.client_address[0]}:{self.client_address[1]}"
                self._send(*server.page(path, host, auth, peer), page=True)
            elif path == "/healthz":
                health = server.health()
                self._send(
                    200 if health["healthy"] else 503,
                    "application/json",
                    json.dumps(health).encode(),
                )
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, server.metrics())
            else:
                self._send(*_not_a_page(path))

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            length = self.headers.get("Content-Length", "0")
            # a control has no body worth reading: what is sent is read (a little) and dropped
            self.rfile.read(min(int(length), 4096) if length.isdigit() else 0)
            path = self.path.split("?")[0]
            if not path.startswith("/api/"):
                self._send(404, "text/plain", b"controls are POST /api/<action>\n")
                return
            if server.control is None:  # before the desk is open, or stopping
                self._send(503, "text/plain", b"controls are taken once the bot trades\n")
                return
            code, body = server.control(
                path.removeprefix("/api/"),
                self.headers.get("Authorization", ""),
                self.headers.get("X-Control-Source", "http"),
                f"{self.client_address[0]}:{self.client_address[1]}",
            )
            self._send(code, "application/json", body)

        def _send(self, code: int, kind: str, body: bytes, page: bool = False) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            if code == 405:  # only a GET of a control: the method it takes
                self.send_header("Allow", "POST")
            self.send_header("Content-Length", str(len(body)))
            if page:  # the page loads only itself; nothing of it is cached or framed
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes are not log lines
            return

    return Handler
