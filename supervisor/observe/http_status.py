"""The status endpoint on 127.0.0.1 (``monitoring.http_port``; 0 = off, the default).

    supervisor loop --publish(Status) after every cycle and every second--> StatusServer
        GET /healthz  JSON: state, connected, last cycle age, kill switch (HTTP 503 when
                      unhealthy: also while waiting for the gateway)
        GET /metrics  Prometheus text (prometheus_client): cycles, symbols, the broker's
                      pacing / lines / errors, open positions, day P&L, RSS

The server runs on its own thread and only reads the last published Status (a frozen
dataclass replaced whole), so a slow or hostile scraper never touches the loop's state.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

HOST = "127.0.0.1"  # never another address: the endpoint says what the account is doing
STALE_AFTER_S = 600.0  # /healthz: a cycle older than this (market open) is unhealthy


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

    def health(self, now_mono: float) -> dict[str, Any]:
        age = None if self.last_cycle_mono is None else round(now_mono - self.last_cycle_mono, 1)
        stale = self.market_open and (age is None or age > STALE_AFTER_S)
        healthy = self.connected and not stale
        return {"healthy": healthy, "state": self.state, "connected": self.connected,
                "market_open": self.market_open, "last_cycle_age_s": age,
                "cycles": self.cycles, "kill_switch": self.halted,
                "kill_switch_reason": self.halted_reason}


class StatusServer:
    """Serves the last published Status; ``start()`` binds, ``stop()`` closes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._status = Status()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._process = psutil.Process()

    def publish(self, status: Status) -> None:
        self._status = status  # one reference swap: the reader sees the old or the new

    def start(self) -> int:
        handler = _handler(self)
        try:
            self._server = http.server.ThreadingHTTPServer((HOST, self.port), handler)
        except OSError as exc:
            raise StatusPortError(f"monitoring.http_port {self.port}: cannot listen on "
                                  f"{HOST}: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="http-status",
                         daemon=True).start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def health(self) -> dict[str, Any]:
        return self._status.health(time.monotonic())

    def metrics(self) -> bytes:
        status, registry = self._status, CollectorRegistry()

        def gauge(name: str, text: str, value: float | None) -> None:
            if value is not None and math.isfinite(value):
                Gauge(f"ibkr_bot_{name}", text, registry=registry).set(value)

        gauge("up", "1 while connected to the broker", float(status.connected))
        gauge("market_open", "1 while the first symbol's session is open",
              float(status.market_open))
        gauge("kill_switch", "1 once the daily loss limit halted new entries",
              float(status.halted))
        gauge("cycles", "cycles completed in this run", float(status.cycles))
        gauge("cycle_seconds", "the last cycle's duration", status.cycle_seconds)
        gauge("last_cycle_age_seconds", "seconds since the last cycle ended",
              None if status.last_cycle_mono is None
              else time.monotonic() - status.last_cycle_mono)
        gauge("symbols_ok", "symbols that reported in the last cycle", float(status.symbols_ok))
        gauge("symbols_failed", "symbols that failed in the last cycle",
              float(status.symbols_failed))
        gauge("symbols_skipped", "symbols skipped (no decision) in the last cycle",
              float(status.symbols_skipped))
        gauge("open_positions", "positions open or pending in the journal",
              float(status.open_positions))
        gauge("day_pnl", "today's P&L in the account currency", status.day_pnl)
        gauge("rss_bytes", "the supervisor's resident memory",
              float(self._process.memory_info().rss))
        broker = Gauge("ibkr_bot_broker", "the broker adapter's own measures (pacing, "
                       "market-data lines, IBKR error codes, reconnects)", ["stat"],
                       registry=registry)
        for name, value in sorted(status.broker.items()):
            if math.isfinite(value):
                broker.labels(stat=name).set(value)
        return bytes(generate_latest(registry))


def _handler(server: StatusServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.split("?")[0] == "/healthz":
                health = server.health()
                self._send(200 if health["healthy"] else 503, "application/json",
                           json.dumps(health).encode())
            elif self.path.split("?")[0] == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, server.metrics())
            else:
                self._send(404, "text/plain", b"try /healthz or /metrics\n")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes are not log lines
            return

    return Handler
