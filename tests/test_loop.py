"""The supervisor in-process with real spawned workers and the StubBroker."""

from __future__ import annotations

import asyncio
import gc
import http.server
import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter

import pytest

from common.messages import SymbolResult
from supervisor import exitcodes
from supervisor.broker.stub import StubBroker
from supervisor.observe.logs import LogService
from supervisor.runtime.clock import SimClock
from supervisor.runtime.cycle import CycleSummary
from supervisor.runtime.loop import Supervisor
from supervisor.trading.risk import RiskDecision
from tests.conftest import make_settings
from tests.sessions import THURSDAY_1100
from tests.strategies import HANG_SYMBOL_ENV, KILL_MARKER_ENV, KILL_SYMBOL_ENV

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


class ListingStub(StubBroker):
    """The stub, with symbols it does not list (as IBKR answers 200 for them)."""

    def __init__(self, *args, unknown=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unknown = set(unknown)
        self.listing_checks = 0

    async def unknown_symbols(self, symbols):
        self.listing_checks += 1
        return {s: f"{s}: error 200: No security definition" for s in symbols if s in self.unknown}


class Watched(Supervisor):
    """The supervisor with what the test saw of it: its printed lines and its cycles."""

    lines: list[str]
    summaries: list[CycleSummary]


def run_supervisor(settings, tmp_path, unknown=(), on_cycle=None) -> Watched:
    """``on_cycle(supervisor, summary)``: a test's look at each cycle, in the loop."""
    clock = SimClock(settings.stub.start.timestamp())
    logs = LogService(settings.logging, None)
    lines: list[str] = []
    summaries: list[CycleSummary] = []  # the supervisor keeps none: the test does
    supervisor = Watched(
        settings,
        ListingStub(settings.stub, clock.now, unknown=unknown),
        clock,
        logs.handle,
        echo=lines.append,
        on_cycle=summaries.append,
    )
    if on_cycle is not None:

        def also(summary: CycleSummary) -> None:
            summaries.append(summary)
            on_cycle(supervisor, summary)

        supervisor.on_cycle = also
    try:
        supervisor.exit_code = asyncio.run(supervisor.run())
    finally:
        logs.close()
    supervisor.lines = lines
    supervisor.summaries = summaries
    return supervisor


def events(tmp_path, name: str) -> list[dict]:
    with open(tmp_path / "bot.jsonl", encoding="utf-8") as f:
        return [e for e in map(json.loads, f) if e.get("event") == name]


def test_three_cycles_over_the_default_universe(tmp_path):
    settings = make_settings(tmp_path, schedule={"cycles": 3})
    sup = run_supervisor(settings, tmp_path)
    assert sup.exit_code == exitcodes.OK
    assert len(sup.lines) == 3
    for summary in sup.summaries:
        assert [r.symbol for r in summary.results] == ["SPY", "QQQ", "AAPL"]
        assert all(r.ok for r in summary.results)
    assert sum(len(r.intents) for s in sup.summaries for r in s.results) >= 1
    # every decision is one structured event in the JSON log, from every worker too
    results = events(tmp_path, "symbol_result")
    assert {(e["cycle"], e["symbol"]) for e in results} == {
        (c, s) for c in (1, 2, 3) for s in ("SPY", "QQQ", "AAPL")
    }
    executions = events(tmp_path, "execution")
    assert executions and all(e["mode"] == "dry_run" for e in executions)
    assert not sup.pool.workers  # all joined


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def test_past_cycles_results_and_decisions_are_released_once_journaled(tmp_path):
    # Given a bot as `run` builds it (no summaries asked for) over six cycles, with a
    # directional signal (SPY) so that each cycle has an intent and a risk decision
    settings = make_settings(tmp_path, schedule={"cycles": 6})
    clock = SimClock(settings.stub.start.timestamp())
    logs = LogService(settings.logging, None)
    before = {kind: live(kind) for kind in (SymbolResult, RiskDecision, CycleSummary)}
    seen: list[dict[type, int]] = []

    def count(_summary: CycleSummary) -> None:  # while the cycle's own summary is alive
        seen.append({kind: live(kind) - n for kind, n in before.items()})

    sup = Supervisor(
        settings,
        StubBroker(settings.stub, clock.now),
        clock,
        logs.handle,
        echo=lambda line: None,
        on_cycle=count,
    )
    try:
        assert asyncio.run(sup.run()) == exitcodes.OK
    finally:
        logs.close()
    # Then at each cycle's end only that cycle is held, and nothing once the run is over
    assert len(seen) == 6 and seen[0][SymbolResult] == 3 and seen[0][RiskDecision] >= 1
    assert seen[-1] == seen[0]
    assert [live(kind) - n for kind, n in before.items()] == [0, 0, 0]
    # what is read of the last cycle is there: its figures
    assert sup.last_cycle is not None and (
        sup.last_cycle.cycle_id,
        sup.last_cycle.symbols,
        sup.last_cycle.failed,
    ) == (6, 3, 0)


def test_symbols_the_venue_does_not_know_are_dropped_once_for_the_run(tmp_path):
    # Given a universe with a symbol the venue does not list
    settings = make_settings(
        tmp_path, schedule={"cycles": 2}, universe={"symbols": ["SPY", "ZZZZ", "QQQ"]}
    )
    # When two cycles run
    sup = run_supervisor(settings, tmp_path, unknown=["ZZZZ"])
    # Then the venue was asked once, one event named the symbol, and no cycle ran it
    assert sup.exit_code == exitcodes.OK and sup.broker.listing_checks == 1  # type: ignore[attr-defined]
    (event,) = events(tmp_path, "unknown_symbols")
    assert event["symbols"] == ["ZZZZ"] and event["levelname"] == "WARNING"
    assert "ZZZZ: error 200" in event["message"]
    assert [[r.symbol for r in s.results] for s in sup.summaries] == [["SPY", "QQQ"]] * 2
    assert all("symbols ok 2/2 failed 0" in line for line in sup.lines)


def test_a_universe_the_venue_does_not_know_at_all_refuses_to_run(tmp_path):
    settings = make_settings(tmp_path, schedule={"cycles": 1}, universe={"symbols": ["ZZZZ"]})
    sup = run_supervisor(settings, tmp_path, unknown=["ZZZZ"])
    assert sup.exit_code == exitcodes.USAGE and not sup.summaries


def test_concurrency_cap_is_respected(tmp_path):
    settings = make_settings(
        tmp_path,
        schedule={"cycles": 1},
        universe={"symbols": ["SPY", "QQQ", "AAPL", "IWM", "MSFT"], "max_concurrent_symbols": 1},
        workers={"count": 3},
    )
    sup = run_supervisor(settings, tmp_path)
    (summary,) = sup.summaries
    assert len(summary.results) == 5 and not summary.failed


def test_a_worker_killed_mid_cycle_is_replaced_and_its_symbol_retried(tmp_path, monkeypatch):
    # Given a strategy that kills its worker the first time it sees QQQ
    monkeypatch.setenv(KILL_MARKER_ENV, str(tmp_path / "killed"))
    monkeypatch.setenv(KILL_SYMBOL_ENV, "QQQ")
    settings = make_settings(
        tmp_path, schedule={"cycles": 2}, strategy={"name": "tests.strategies:DieOnce"}
    )
    # When the cycle runs
    sup = run_supervisor(settings, tmp_path)
    # Then the worker died once, was respawned, and QQQ succeeded on its second attempt
    assert (tmp_path / "killed").exists()
    assert sup.pool.respawns == 1
    first = {r.symbol: r for r in sup.summaries[0].results}
    assert all(r.ok for r in first.values())
    assert first["QQQ"].attempt == 2 and first["QQQ"].reasons == ("attempt 2",)
    assert len(sup.summaries) == 2 and not sup.summaries[1].failed
    assert events(tmp_path, "worker_died")


def test_a_symbol_that_kills_every_worker_is_reported_failed(tmp_path, monkeypatch):
    monkeypatch.setenv(KILL_SYMBOL_ENV, "AAPL")
    settings = make_settings(
        tmp_path, schedule={"cycles": 1}, strategy={"name": "tests.strategies:AlwaysDie"}
    )
    sup = run_supervisor(settings, tmp_path)
    (summary,) = sup.summaries
    by_symbol = {r.symbol: r for r in summary.results}
    assert by_symbol["SPY"].ok and by_symbol["QQQ"].ok
    assert not by_symbol["AAPL"].ok and "died" in (by_symbol["AAPL"].error or "")
    assert sup.exit_code == exitcodes.OK


def test_respawn_storm_stops_the_bot(tmp_path, monkeypatch):
    monkeypatch.setenv(KILL_SYMBOL_ENV, "SPY")
    settings = make_settings(
        tmp_path,
        schedule={"cycles": 0},
        strategy={"name": "tests.strategies:AlwaysDie"},
        workers={"max_respawns_per_minute": 2},
    )
    sup = run_supervisor(settings, tmp_path)
    assert sup.exit_code == exitcodes.HALTED
    assert events(tmp_path, "boot_failure")


def test_closed_market_waits_for_the_open(tmp_path):
    # Given a simulated start on a Saturday: the first cycle runs at Monday's open
    settings = make_settings(
        tmp_path, schedule={"cycles": 1}, stub={"start": "2026-01-10T12:00:00-05:00"}
    )
    sup = run_supervisor(settings, tmp_path)
    assert len(sup.summaries) == 1
    assert sup.desk is not None and sup.desk.state is not None
    assert sup.desk.state.day == "2026-01-12"
    # and the wait is said once, as a date and a duration (not every five simulated minutes)
    closed = events(tmp_path, "market_closed")
    assert [e["message"] for e in closed] == [
        "market closed; next regular open Mon 2026-01-12 09:30 ET, in 45 h"
    ]


def test_the_monitor_follows_a_respawned_worker(tmp_path, monkeypatch):
    monkeypatch.setenv(KILL_MARKER_ENV, str(tmp_path / "killed"))
    monkeypatch.setenv(KILL_SYMBOL_ENV, "QQQ")
    metrics = tmp_path / "metrics.jsonl"
    settings = make_settings(
        tmp_path,
        schedule={"cycles": 0, "interval_s": 60},
        strategy={"name": "tests.strategies:DieOnce"},
        monitoring={"interval_s": 0.2},
    )

    def running_samples() -> list[dict]:
        if not metrics.exists():
            return []
        with open(metrics, encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        return [r for r in records if not r["run"].get("ended")]

    async def stop_once_sampled(sup: Supervisor) -> None:
        # the run ends on the event asserted (a sample with the new worker), not after a
        # wall-clock runtime that a slow start of the workers can use up before the cycle
        while not any("worker-3" in r["processes"] for r in running_samples()):
            await asyncio.sleep(0.05)
        sup.stop.set()

    waiting: list[asyncio.Task] = []
    sup = run_supervisor(
        settings,
        tmp_path,
        on_cycle=lambda sup, _summary: waiting.append(
            asyncio.get_running_loop().create_task(stop_once_sampled(sup))
        ),
    )
    assert sup.pool.respawns == 1
    with open(metrics, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    names = set().union(*(r["processes"] for r in records))
    # workers 1 and 2 started; one died on QQQ and worker 3 replaced it
    assert {"supervisor", "worker-3"} <= names
    # the run's final record, at exit, has no workers left
    assert records[-1]["run"]["ended"] and "worker-3" not in records[-1]["processes"]
    # a sample while running saw the replacement beside the other worker
    running = [r["processes"] for r in running_samples() if "worker-3" in r["processes"]]
    assert any(len([n for n in p if n.startswith("worker-")]) == 2 for p in running), running
    assert all(r["processes"]["supervisor"]["rss_kb"] > 0 for r in records)


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.received.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    do_GET = do_POST = _record

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return


def test_trades_and_heartbeats_reach_a_webhook_and_a_dead_one_costs_nothing(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        settings = make_settings(
            tmp_path,
            schedule={"cycles": 3},
            alerts={
                "webhook_url": f"{base}/hook",
                "heartbeat_url": f"{base}/beat",
                "slack_webhook": "http://127.0.0.1:9/dead-secret-token",
                "timeout_s": 1,
                "retries": 0,
            },
            ibkr={"account": "DU1234567"},
        )
        # as load_settings leaves them when BOT_MODE and IBKR_ACCOUNT supplied the two keys
        settings = settings.with_origins(
            {"execution.mode": "$BOT_MODE", "ibkr.account": "$IBKR_ACCOUNT"}
        )
        sup = run_supervisor(settings, tmp_path)
    finally:
        server.shutdown()
    assert sup.exit_code == exitcodes.OK and sup.cycles_done == 3
    beats = [r for r in _Recorder.received if r[:2] == ("GET", "/beat")]
    hooks = [json.loads(r[2]) for r in _Recorder.received if r[:2] == ("POST", "/hook")]
    assert len(beats) >= 1
    assert any(h["kind"] == "trade" for h in hooks)
    with open(tmp_path / "bot.jsonl", encoding="utf-8") as f:
        assert "dead-secret-token" not in f.read()
    said = "execution.mode dry_run from $BOT_MODE, ibkr.account DU1234567 from $IBKR_ACCOUNT"
    [start] = [h for h in hooks if h["kind"] == "start"]
    assert said in start["text"]  # the start alert and the start line say who supplied them
    assert said in events(tmp_path, "ready")[0]["message"]


def test_two_workers_dying_together_retry_on_live_workers_only(tmp_path, monkeypatch):
    # Given two workers, each holding one symbol, killed at the same instant
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv(KILL_MARKER_ENV, str(marks))
    monkeypatch.setenv(KILL_SYMBOL_ENV, "SPY,QQQ")
    settings = make_settings(
        tmp_path,
        schedule={"cycles": 1},
        universe={"symbols": ["SPY", "QQQ"], "max_concurrent_symbols": 2},
        workers={"count": 2, "max_respawns_per_minute": 10},
        strategy={"name": "tests.strategies:HangFirst"},
    )

    def kill_both() -> None:
        while not all((marks / s).exists() and (marks / s).read_text() for s in ("SPY", "QQQ")):
            time.sleep(0.01)
        # one kill(1) for both: microseconds apart, never split by a thread switch here
        subprocess.run(
            ["kill", "-KILL", *((marks / s).read_text() for s in ("SPY", "QQQ"))], check=True
        )

    threading.Thread(target=kill_both, daemon=True).start()
    # When the cycle runs
    sup = run_supervisor(settings, tmp_path)
    # Then neither symbol was "retried" on the other dead worker: both ran again on a
    # respawned one, and succeeded
    (summary,) = sup.summaries
    assert sup.pool.respawns == 2
    assert [(r.symbol, r.ok, r.attempt) for r in summary.results] == [
        ("SPY", True, 2),
        ("QQQ", True, 2),
    ], [r.error for r in summary.results]


def test_the_display_zone_never_changes_what_is_traded(tmp_path):
    # Given the stub pinned to Thursday 11:00 New York time: already Friday in Tokyo and
    # Sydney, and the day before a weekly expiry
    def intents(zone: str) -> list[tuple]:
        folder = tmp_path / zone.replace("/", "-")
        folder.mkdir()
        settings = make_settings(
            folder,
            schedule={"cycles": 2, "timezone": zone},
            stub={"start": THURSDAY_1100.isoformat()},
        )
        # When two cycles run with that display zone
        assert run_supervisor(settings, folder).exit_code == exitcodes.OK
        with sqlite3.connect(folder / "journal.sqlite") as db:
            return db.execute(
                "SELECT intent_id, day, symbol, expiry, strike, option_right "
                "FROM intents ORDER BY intent_id"
            ).fetchall()

    new_york = intents("America/New_York")
    # Then the same intents on the same contracts, counted from the exchange's Thursday
    assert new_york, "the pinned session decides nothing: pick a moment that trades"
    assert {row[1] for row in new_york} == {"2026-12-03"}
    assert intents("Asia/Tokyo") == new_york
    assert intents("Australia/Sydney") == new_york


def test_a_worker_stuck_on_one_symbol_costs_only_that_symbol(tmp_path, monkeypatch):
    # Given a strategy that never returns on AAPL, six symbols and two workers
    monkeypatch.setenv(HANG_SYMBOL_ENV, "AAPL")
    symbols = ["SPY", "QQQ", "AAPL", "IWM", "MSFT", "NVDA"]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = make_settings(
            tmp_path,
            schedule={"cycles": 3},
            universe={"symbols": symbols},
            strategy={"name": "tests.strategies:HangOn"},
            workers={"count": 2, "step_timeout_s": 2.0},
            alerts={"webhook_url": f"http://127.0.0.1:{server.server_address[1]}/hook"},
        )
        # When three cycles run
        sup = run_supervisor(settings, tmp_path)
    finally:
        server.shutdown()
    # Then every cycle decided every other symbol, and failed AAPL as stuck, not retried
    assert sup.exit_code == exitcodes.OK
    assert len(sup.summaries) == 3
    for summary in sup.summaries:
        by_symbol = {r.symbol: r for r in summary.results}
        assert [s for s, r in by_symbol.items() if not r.ok] == ["AAPL"]
        assert "stuck for over 2s on AAPL" in (by_symbol["AAPL"].error or "")
        assert all(r.reasons == ("fine",) for s, r in by_symbol.items() if s != "AAPL")
    # and the stuck worker was killed and replaced each time, said once each in the log,
    # alerted once when it happened again
    assert sup.pool.hangs == 3 and sup.pool.respawns == 3
    stuck = events(tmp_path, "worker_stuck")
    assert [e["symbol"] for e in stuck] == ["AAPL"] * 3
    assert not events(tmp_path, "boot_failure")
    hooks = [json.loads(r[2]) for r in _Recorder.received if r[:2] == ("POST", "/hook")]
    assert [h["kind"] for h in hooks].count("worker_stuck") == 1


def test_a_worker_is_replaced_after_its_share_of_tasks(tmp_path):
    # Given workers retired after 2 symbol tasks each
    settings = make_settings(
        tmp_path, schedule={"cycles": 3}, workers={"count": 2, "max_tasks_per_worker": 2}
    )
    # When three cycles of three symbols run (9 tasks)
    sup = run_supervisor(settings, tmp_path)
    # Then every symbol decided in every cycle, on workers that were replaced on the way:
    # none was given more than its two tasks
    assert sup.exit_code == exitcodes.OK
    assert all(not s.failed for s in sup.summaries) and len(sup.summaries) == 3
    by_worker = Counter(r.worker_id for s in sup.summaries for r in s.results)
    assert max(by_worker.values()) <= 2 and len(by_worker) >= 5
    assert sup.pool.retired >= 4
    assert not events(tmp_path, "worker_died")
    assert sup.pool.respawns == 0  # a retirement is not a death
