"""The dashboard at ``/`` of the status endpoint, and its static export (``report --html``).

    GET /                index.html        (supervisor/observe/static: package data, no CDN)
    GET /static/<name>   app.js, app.css   (an allow-list: nothing else of the disk is served)
    GET /api/state       {"live": live_state(Status), "day": the journal's day}
                         the day from ``day_state`` (journal/dashboard_rows.py, handed in by
                         runtime/status.py), read at most once per DAY_EVERY_S however many
                         tabs poll
    export_html(state)   index.html with the CSS, the JS and the state inlined: one file that
                         opens anywhere, offline

The page reads only; its buttons POST /api/pause|resume|flatten|kill with the token the
trader types (runtime/controls.py checks it).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # http_status imports this module: the type only
    from supervisor.observe.http_status import Status

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# what the served page may load: itself only (no CDN, no font, no inline script)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
DAY_EVERY_S = 1.0  # the journal read at most this often (the page polls every 2 s) ...
DAY_SHARE = 0.1  # ... and at most this share of the time: a big day's read takes longer
TRAIL_EVERY_S = 10.0  # session seconds between two points of the day's P&L trail
TRAIL_POINTS = 2400  # a regular session (6.5 h) at one point per 10 s: ~60 KB

DayState = Callable[[], dict[str, Any] | None]


def asset(name: str) -> bytes:
    """A file of supervisor/observe/static (KeyError: not one of ASSETS)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files("supervisor.observe").joinpath("static", name).read_bytes()


def live_state(
    status: Status, rss_bytes: Callable[[int], float | None], msg_per_s: float | None
) -> dict[str, Any]:
    """What the running bot says of itself (the journal says the rest): JSON-ready."""
    rss = {}
    for role, pid in status.processes:
        value = rss_bytes(pid)
        if value is not None:
            rss[role] = round(value / 1e6, 1)
    lines = status.broker.get("lines_in_use")
    sent = status.broker.get("messages_sent_total")
    return {
        "state": status.state,
        "connected": status.connected,
        "market_open": status.market_open,
        "next_open_ts": status.next_open_ts,
        "session_ts": status.session_ts,
        "paused": status.paused,
        "kill_switch": status.halted,
        "kill_switch_reason": status.halted_reason,
        "cycles": status.cycles,
        "cycle_seconds": status.cycle_seconds,
        "symbols_ok": status.symbols_ok,
        "symbols_failed": status.symbols_failed,
        "symbols_skipped": status.symbols_skipped,
        "open_positions": status.open_positions,
        "day_pnl": None if status.day_pnl is None else round(status.day_pnl, 2),
        "soak": {
            "rss_mb": rss,
            "lines_in_use": None if lines is None else int(lines),
            "messages_sent_total": None if sent is None else int(sent),
            "msg_per_s": None if msg_per_s is None else round(msg_per_s, 1),
        },
    }


class Rate:
    """Messages per second between two reads of a running total (a thread-safe pair)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: tuple[float, float] | None = None
        self._rate: float | None = None
        self._lock = threading.Lock()

    def update(self, total: float | None) -> float | None:
        if total is None:
            return None
        now = self.clock()
        with self._lock:
            if self._last is not None and now - self._last[0] >= 0.5:
                self._rate = max(0.0, (total - self._last[1]) / (now - self._last[0]))
                self._last = (now, total)
            elif self._last is None:
                self._last = (now, total)
            return self._rate


class PnlTrail:
    """The day's P&L as the bot published it (paper: marked at the latest quotes; live: IBKR's
    figure), a point per TRAIL_EVERY_S of the session clock: the equity curve between the
    journal's realized steps, which keep no marks. In memory only: a restart starts it again
    (the journal's curve remains); the page keeps the points of its day."""

    def __init__(self, every_s: float = TRAIL_EVERY_S, points: int = TRAIL_POINTS) -> None:
        self.every_s = every_s
        self._points: deque[tuple[float, float]] = deque(maxlen=points)
        self._lock = threading.Lock()

    def add(self, status: Status) -> None:
        ts, pnl = status.session_ts, status.day_pnl
        if ts is None or pnl is None or not math.isfinite(pnl):
            return
        with self._lock:
            if self._points and ts < self._points[-1][0]:
                self._points.clear()  # the session clock went back: another session
            if not self._points or ts - self._points[-1][0] >= self.every_s:
                self._points.append((ts, round(pnl, 2)))

    def points(self) -> list[list[float]]:
        with self._lock:
            return [[ts, pnl] for ts, pnl in self._points]


class Dashboard:
    """The state the page polls: the live Status and the journal's day (cached)."""

    def __init__(
        self, day_state: DayState | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.day_state = day_state
        self.clock = clock
        self.rate = Rate(clock)
        self.trail = PnlTrail()  # fed by StatusServer.publish, every second
        self.universe: tuple[str, ...] = ()  # universe.symbols: shown before their first cycle
        self._day: dict[str, Any] | None = None
        self._read_at: float | None = None
        self._every_s = DAY_EVERY_S
        self._lock = threading.Lock()

    def day(self) -> dict[str, Any] | None:
        if self.day_state is None:
            return None
        with self._lock:  # one reader of the journal at a time; the others get its answer
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self._every_s:
                self._day = self.day_state()
                self._read_at = self.clock()
                self._every_s = max(DAY_EVERY_S, (self._read_at - now) / DAY_SHARE)
            return self._day

    def state(self, status: Status, rss_bytes: Callable[[int], float | None]) -> bytes:
        rate = self.rate.update(status.broker.get("messages_sent_total"))
        live = {
            **live_state(status, rss_bytes, rate),
            "pnl_trail": self.trail.points(),
            "universe": list(self.universe),
        }
        body = {"live": live, "day": self.day()}
        return json.dumps(finite(body), allow_nan=False, default=str).encode()


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: the browser's JSON.parse refuses them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def export_html(state: dict[str, Any]) -> str:
    """One self-contained page of a journal's day: the served page with its CSS and JS
    inlined and the state embedded (drawn once, without controls)."""
    page = asset("index.html").decode()
    css = asset("app.css").decode()
    js = asset("app.js").decode()
    data = json.dumps(finite(state), allow_nan=False, default=str)
    # inside <script>, "</" would end it: JSON allows "<\/" for the same text
    data = data.replace("</", "<\\/")
    js = js.replace("</", "<\\/")  # none today; a later edit must not end the script early
    page = page.replace('<link rel="stylesheet" href="/static/app.css">', f"<style>\n{css}</style>")
    return page.replace(
        '<script src="/static/app.js"></script>',
        f'<script type="application/json" id="state">{data}</script>\n<script>\n{js}</script>',
    )
