"""The bot's life as a person running it unattended sees it: start and stop alerts, heartbeats
while the market is closed, a stop during the connect, a journal that cannot be written, an
unhandled error — each a clean stop with its exit code and one clear line."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor import exitcodes
from supervisor.broker.base import AccountSnapshot
from supervisor.broker.stub import StubBroker
from supervisor.journal.store import Journal
from supervisor.observe.logs import LogService
from supervisor.runtime.clock import Clock, PinnedClock, SimClock
from supervisor.runtime.loop import Supervisor
from supervisor.runtime.status import duration, progress, stopped_text
from tests.conftest import make_settings
from tests.sessions import SATURDAY_NOON

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._record(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._record(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _record(self, body: bytes) -> None:
        _Recorder.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _hooks() -> list[dict[str, Any]]:
    return [json.loads(b) for m, p, b in _Recorder.received if (m, p) == ("POST", "/hook")]


def _beats() -> int:
    return sum(1 for m, p, _ in _Recorder.received if (m, p) == ("GET", "/beat"))


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    with open(tmp_path / "bot.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


class _Watched(Supervisor):
    lines: list[str]  # what it printed, kept by the test


def _run(
    settings,
    broker,
    clock: Clock,
    stop_when: Callable[[], bool] | None = None,
    deadline_s: float = 30.0,
) -> _Watched:
    logs = LogService(settings.logging, None)
    lines: list[str] = []
    sup = _Watched(settings, broker, clock, logs.handle, echo=lines.append)

    async def stop_once_seen() -> None:  # as the signal handler would, SIGTERM
        assert stop_when is not None
        end = time.monotonic() + deadline_s
        while not stop_when() and time.monotonic() < end:
            await asyncio.sleep(0.05)
        sup._on_signal(signal.SIGTERM)

    async def main() -> int:
        if stop_when is not None:
            watcher = asyncio.create_task(stop_once_seen())
        try:
            return await sup.run()
        finally:
            if stop_when is not None:
                watcher.cancel()

    try:
        sup.exit_code = asyncio.run(main())
    finally:
        logs.close()
    sup.lines = lines
    return sup


def _stub(settings, clock: Clock) -> StubBroker:
    return StubBroker(settings.stub, clock.now)


def test_progress_and_durations_read_as_a_person_would() -> None:
    assert progress(1823, 2000, 1823 * 0.4) == " · 1823/2000, ETA 1m11s"
    assert progress(3, 3, 9.0) == " · 3/3, ETA 0s"
    assert progress(5, 0, 10.0) == ""  # until stopped: no plan, no ETA
    assert duration(7322) == "2h02m" and duration(59.6) == "1m00s"
    assert stopped_text(exitcodes.STORAGE, 7) == "bot journal failed after 7 cycles (exit 5)"


def test_start_stop_alerts_and_progress_of_a_planned_run(tmp_path, endpoint) -> None:
    settings = make_settings(
        tmp_path, schedule={"cycles": 2}, alerts={"webhook_url": f"{endpoint}/hook", "retries": 0}
    )
    clock = SimClock(settings.stub.start.timestamp())
    sup = _run(settings, _stub(settings, clock), clock)
    assert sup.exit_code == exitcodes.OK
    assert sup.lines[0].endswith(" · 1/2, ETA " + sup.lines[0].rsplit("ETA ", 1)[1])
    assert " · 2/2, ETA 0s" in sup.lines[1]
    kinds = [h["kind"] for h in _hooks()]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert "bot started: broker stub, mode dry_run, 3 symbols" in _hooks()[0]["text"]
    assert _hooks()[-1]["text"] == "bot stopped after 2 cycles (exit 0)"


def test_heartbeats_keep_coming_while_the_market_is_closed(tmp_path, endpoint) -> None:
    # Given a Saturday, a clock at wall rate and a heartbeat every second
    settings = make_settings(
        tmp_path,
        schedule={"cycles": 1},
        stub={"start": SATURDAY_NOON.isoformat()},
        alerts={
            "heartbeat_url": f"{endpoint}/beat",
            "heartbeat_interval_s": 1,
            "webhook_url": f"{endpoint}/hook",
            "retries": 0,
        },
    )
    clock = PinnedClock(SATURDAY_NOON.timestamp())
    # When the bot waits for Monday's open and is stopped once 3 beats arrived (a busy
    # machine may take longer than 3 s; the deadline fails the test if they never come)
    sup = _run(settings, _stub(settings, clock), clock, stop_when=lambda: _beats() >= 3)
    # Then no cycle ran, yet the dead-man monitor heard from it every second, and the stop
    # was said
    assert sup.exit_code == exitcodes.OK and sup.cycles_done == 0
    assert _beats() >= 3
    assert [h["kind"] for h in _hooks()] == ["start", "stop"]
    assert any(e.get("event") == "market_closed" for e in _events(tmp_path))


class _HangingConnect(StubBroker):
    """A gateway that accepts the socket and never answers the handshake."""

    connecting = False

    async def connect(self) -> None:
        self.connecting = True
        await asyncio.sleep(3600)


def test_a_stop_during_the_connect_is_honoured_at_once(tmp_path) -> None:
    settings = make_settings(tmp_path, schedule={"cycles": 1})
    clock = SimClock(settings.stub.start.timestamp())
    broker = _HangingConnect(settings.stub, clock.now)
    sup = _run(settings, broker, clock, stop_when=lambda: broker.connecting)
    assert sup.exit_code == exitcodes.OK and sup.cycles_done == 0
    events = _events(tmp_path)
    assert any(e.get("event") == "stopped_starting" for e in events)
    assert not [e for e in events if e.get("levelname") in ("ERROR", "CRITICAL")]
    assert not sup.pool.workers  # joined, not abandoned


class _FillsTheDisk(StubBroker):
    """Caps the journal's pages from the third cycle on: SQLite then says 'database or disk
    is full', exactly as on a full filesystem."""

    journal: Journal | None = None
    calls = 0

    async def account(self) -> AccountSnapshot:
        self.calls += 1
        if self.calls == 3 and self.journal is not None:
            db = self.journal._db
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages}")
        return await super().account()


def test_a_full_disk_stops_cleanly_keeps_what_was_committed_and_resumes(tmp_path, endpoint) -> None:
    settings = make_settings(
        tmp_path, schedule={"cycles": 200}, alerts={"webhook_url": f"{endpoint}/hook", "retries": 0}
    )
    clock = SimClock(settings.stub.start.timestamp())
    broker = _FillsTheDisk(settings.stub, clock.now)
    original_start = Journal.claim

    def claim(self: Journal, *args: Any) -> None:  # hand the broker the journal it fills
        broker.journal = self
        original_start(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Journal, "claim", claim)
        sup = _run(settings, broker, clock)
    assert sup.exit_code == exitcodes.STORAGE
    assert 2 <= sup.cycles_done < 200
    events = _events(tmp_path)
    failed = [e for e in events if e.get("event") == "journal_failed"]
    assert len(failed) == 1 and "disk is full" in failed[0]["message"]
    assert not [e for e in events if e.get("event") == "crash"]
    assert _hooks()[-1]["kind"] == "exit" and "(exit 5)" in _hooks()[-1]["text"]
    # what was committed is there and sound
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ended = db.execute("SELECT COUNT(*) FROM cycles WHERE ended_ts IS NOT NULL").fetchone()[0]
    intents = db.execute("SELECT intent_id FROM intents").fetchall()
    db.close()
    assert ended >= 2
    # and the next start, with space, resumes on the same journal
    settings = make_settings(tmp_path, schedule={"cycles": 2})
    again = _run(settings, _stub(settings, clock), clock)
    assert again.exit_code == exitcodes.OK and again.cycles_done == 2
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    after = set(db.execute("SELECT intent_id FROM intents").fetchall())
    db.close()
    assert set(intents) <= after


class _Buggy(StubBroker):
    calls = 0

    async def account(self) -> AccountSnapshot:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("a bug in the adapter")
        return await super().account()


def test_an_unhandled_error_is_said_once_alerted_and_shuts_down_cleanly(tmp_path, endpoint) -> None:
    settings = make_settings(
        tmp_path, schedule={"cycles": 5}, alerts={"webhook_url": f"{endpoint}/hook", "retries": 0}
    )
    clock = SimClock(settings.stub.start.timestamp())
    sup = _run(settings, _Buggy(settings.stub, clock.now), clock)
    assert sup.exit_code == exitcodes.FAILED and sup.cycles_done == 1
    crash = [e for e in _events(tmp_path) if e.get("event") == "crash"]
    assert len(crash) == 1 and "a bug in the adapter" in crash[0]["message"]
    assert _hooks()[-1]["text"] == "bot crashed after 1 cycles (exit 1)"
    assert not sup.pool.workers


def test_a_log_file_that_stops_taking_writes_is_said_once(tmp_path, capsys) -> None:
    import logging

    from common.config import LoggingSettings

    logs = LogService(LoggingSettings(json_path=str(tmp_path / "bot.jsonl"), console=False), None)
    (handler,) = logs.handlers
    assert isinstance(handler, logging.StreamHandler)  # the file's, the console off
    handler.stream.close()  # as a full disk would make every write fail
    try:
        for n in range(5):
            logging.getLogger("supervisor.test").warning("line %d", n)
    finally:
        logs.close()
    err = capsys.readouterr().err
    assert err.count("cannot write the log file") == 1 and "Traceback" not in err


def test_sigterm_while_connecting_to_a_silent_gateway_exits_0_at_once(tmp_path) -> None:
    """The real IB client against a socket that accepts and never answers the handshake."""
    import os
    import select
    import socket
    import subprocess
    import sys

    from common.config import PROJECT_ROOT

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    config = tmp_path / "settings.yaml"
    config.write_text(
        "ibkr:\n  connect_timeout_s: 120\nschedule:\n  cycles: 1\nlogging:\n  console: true\n"
    )
    bot = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "run",
            "--broker",
            "ibkr",
            "--port",
            str(silent.getsockname()[1]),
            "--config",
            str(config),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SUPERVISOR_HOME": str(tmp_path)},
    )
    try:
        readable, _, _ = select.select([silent], [], [], 60)  # the bot's connect arrived
        assert readable, "the bot never connected"
        bot.send_signal(signal.SIGTERM)
        _, err = bot.communicate(timeout=30)  # far less than the 120 s connect timeout
    finally:
        if bot.poll() is None:
            bot.kill()
        silent.close()
    assert bot.returncode == exitcodes.OK, err
    assert "stopped while starting" in err
    assert " ERROR " not in err and "Traceback" not in err


def test_no_sleep_after_the_last_of_cycles_n(tmp_path) -> None:
    # Given an hour between cycles on a clock that really waits
    settings = make_settings(tmp_path, schedule={"cycles": 1, "interval_s": 3600})
    clock = PinnedClock(settings.stub.start.timestamp())
    # When one cycle is asked for, then it returns (an hour's sleep would hit the timeout)
    sup = _run(settings, _stub(settings, clock), clock)
    assert sup.exit_code == exitcodes.OK and sup.cycles_done == 1
