"""The controls' way in: the token, and the hand-over from the status server's thread to the
supervisor's event loop.

    POST /api/<action> (http_status.py, a thread per connection)
        --> ControlGate.handle: the bearer token checked (a wrong or missing one: 401, counted
            in ``refused``, on /metrics as ibkr_bot_control_refused_total, logged, nothing
            changed)
        --> asyncio.run_coroutine_threadsafe onto the loop: Controls.apply (trading/controls.py)
            runs there, never on the HTTP thread; the answer waited for up to WAIT_S (a
            flatten waits for the desk's lock: a cycle acting may hold it), else 202

The token: ``monitoring.control_token`` (``${ENV}`` expanded by the settings loader), or
when unset a new one written at each start to ``control.token`` beside the journal, mode
0600; ``python -m supervisor pause`` reads it there (commands/control.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from common.config import Settings
from supervisor.trading.controls import ACTIONS, Control, Controls

log = logging.getLogger("supervisor.runtime.controls")

TOKEN_FILE = "control.token"
WAIT_S = 20.0  # real seconds the HTTP answer waits for the loop to act


Handler = Callable[[str, str, str, str], tuple[int, bytes]]  # action, auth, source, peer


class ControlServer(Protocol):
    """What the controls need of the status server (observe/http_status.StatusServer)."""

    port: int
    host: str  # monitoring.bind
    control: Handler | None

    def add_collector(self, collector: Collector) -> None: ...


def token_path(settings: Settings) -> Path:
    """Where a generated token is kept: the state folder, beside the journal."""
    return Path(settings.execution.journal_path).parent / TOKEN_FILE


def configured_token(settings: Settings) -> str | None:
    secret = settings.monitoring.control_token
    return secret.get_secret_value() if secret is not None else None


def start_token(settings: Settings) -> str:
    """The token controls need: the configured one, or a new one written mode 0600."""
    configured = configured_token(settings)
    if configured:
        return configured
    token = secrets.token_urlsafe(32)
    path = token_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask or a file left there said
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(temporary, path)  # a reader sees the old token or the new, never half
    return token


def read_token(settings: Settings) -> str | None:
    """The token a running bot of these settings expects (None: no file, not readable)."""
    configured = configured_token(settings)
    if configured:
        return configured
    try:
        return token_path(settings).read_text().strip() or None
    except OSError:
        return None


class ControlGate:
    """Called on the HTTP server's threads; acts only through the loop."""

    def __init__(
        self,
        token: str,
        loop: asyncio.AbstractEventLoop,
        controls: Controls,
        now: Callable[[], float],
        wait_s: float = WAIT_S,
    ) -> None:
        self._expected = f"Bearer {token}".encode()
        self.loop = loop
        self.controls = controls
        self.now = now  # read on the loop: the supervisor's clock (a sim's is pinned)
        self.wait_s = wait_s
        self.refused = 0  # requests without the right token (401)
        self._lock = threading.Lock()

    def handle(self, action: str, authorization: str, source: str, peer: str) -> tuple[int, bytes]:
        """(HTTP status, JSON body) for POST /api/<action>."""
        if not hmac.compare_digest(authorization.encode(), self._expected):
            with self._lock:
                self.refused += 1
            log.warning(
                "control %s from %s refused: wrong or missing token (%d so far)",
                action[:20],
                peer,
                self.refused,
                extra={"event": "control_refused", "peer": peer},
            )
            return 401, _body(error="a control needs Authorization: Bearer <token>")
        if action not in ACTIONS:
            return 404, _body(error=f"no control {action[:20]!r}: one of {', '.join(ACTIONS)}")
        control = Control(action, "cli" if source == "cli" else "http", peer)
        try:
            future = asyncio.run_coroutine_threadsafe(self._apply(control), self.loop)
        except RuntimeError:  # the loop is closed: the bot is stopping
            return 503, _body(error="the bot is stopping")
        try:
            result = future.result(timeout=self.wait_s)
        except TimeoutError:
            return 202, _body(action=action, result="accepted: acts once the desk is free")
        except Exception as exc:  # noqa: BLE001 - said to the caller, the bot goes on
            log.exception("control %s failed", action, extra={"event": "control_failed"})
            return 500, _body(action=action, error=f"failed: {exc}")
        return 200, _body(action=action, result=result)

    async def _apply(self, control: Control) -> str:
        return await self.controls.apply(control, self.now())


class RefusedCollector(Collector):
    """``ibkr_bot_control_refused_total``: control requests refused for their token."""

    def __init__(self, gate: ControlGate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "ibkr_bot_control_refused",
            "control requests refused (401): a wrong or missing token",
            value=self.gate.refused,
        )


def _body(**fields: str) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def attach(
    server: ControlServer | None,
    settings: Settings,
    controls: Controls,
    now: Callable[[], float],
) -> ControlGate | None:
    """The controls on the status endpoint, from the desk's start (none without one)."""
    if server is None:
        return None
    gate = ControlGate(start_token(settings), asyncio.get_running_loop(), controls, now)
    server.control = gate.handle
    server.add_collector(RefusedCollector(gate))
    where = "monitoring.control_token" if configured_token(settings) else token_path(settings)
    log.info(
        "controls on POST http://%s:%d/api/pause|resume|flatten|kill (token: %s)",
        server.host,
        server.port,
        where,
        extra={"event": "controls"},
    )
    return gate
