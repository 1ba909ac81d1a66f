"""The trader's controls (issue 25): the ``paused`` rule's place, the pause restored from the
journal, the paper flatten, the token's file and the 401 of a wrong one."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from supervisor.broker.base import BrokerError
from supervisor.journal.store import Journal
from supervisor.observe.http_status import StatusServer
from supervisor.runtime.controls import attach, read_token, start_token, token_path
from supervisor.trading.controls import Control, Controls
from supervisor.trading.paper import flatten, open_from
from supervisor.trading.risk import RiskState, evaluate
from tests.conftest import make_settings
from tests.test_gateway_wait import Alerts
from tests.test_paper import T0, filled, intent, quote
from tests.test_risk_rules import OPTIONS, RISK, STATE
from tests.test_risk_rules import intent as risk_intent

pytestmark = pytest.mark.timeout(30)


def test_paused_is_checked_before_every_other_rule() -> None:
    # Given a state every early rule would refuse: journal lost, kill switch, a daily loss
    worst = RiskState(
        STATE.day, 48_000.0, 1_000.0, halted=True, journal_lost="deleted", paused=True
    )
    decision = evaluate(risk_intent(), worst, RISK, OPTIONS)
    assert (decision.accepted, decision.rule) == (False, "paused")
    # and an intent every rule accepts is refused only for the pause, accepted without it
    assert evaluate(risk_intent(), replace(STATE, paused=True), RISK, OPTIONS).rule == "paused"
    assert evaluate(risk_intent(), STATE, RISK, OPTIONS).accepted
    # without the pause the next rule decides, as before
    assert evaluate(risk_intent(), replace(worst, paused=False), RISK, OPTIONS).rule == (
        "journal_lost"
    )


def test_the_latest_pause_or_resume_is_restored(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        assert not journal.controls.paused()  # nothing journaled: not paused
        journal.controls.record("2026-12-01", 1.0, "pause", "cli", "127.0.0.1:1", "paused")
        journal.controls.record("2026-12-01", 2.0, "kill", "http", "127.0.0.1:2", "tripped")
    with Journal(path) as journal:  # a restart
        assert journal.controls.paused()
        journal.controls.record("2026-12-02", 3.0, "resume", "cli", "127.0.0.1:3", "resumed")
    with Journal(path) as journal:
        assert not journal.controls.paused()
        journal.controls.record("2026-12-02", 4.0, "flatten", "cli", "127.0.0.1:4", "flat")
    with Journal(path, readonly=True) as journal:
        assert journal.controls.paused()  # a flatten pauses
        rows = journal.day_summary("2026-12-02")["controls"]
    assert [(r["action"], r["source"], r["peer"]) for r in rows] == [
        ("resume", "cli", "127.0.0.1:3"),
        ("flatten", "cli", "127.0.0.1:4"),
    ]


def test_flatten_sells_an_open_position_at_the_bid_and_cancels_a_pending_one() -> None:
    held = filled()
    closed = flatten(held, quote(1.70, 1.80), T0 + 5)
    assert (closed.status, closed.exit_reason, closed.exit_price) == ("closed", "flatten", 1.70)
    pending = open_from(intent(), 1, T0)  # no ask given: not filled
    assert pending.status == "pending"
    assert flatten(pending, None, T0 + 5).exit_reason == "cancelled"
    assert flatten(held, quote(), T0 + 5) == held  # no bid: held, the cycles' exits go on


class FakeDesk:
    """What Controls uses of the desk, recording what was done and on which thread."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.paused = False
        self.state: Any = None
        self.lock = asyncio.Lock()
        self.done: list[tuple[str, str]] = []

    def day_of(self, ts: float) -> str:
        return "2026-12-01"

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.done.append(("pause" if paused else "resume", threading.current_thread().name))

    async def flatten(self, now_ts: float) -> str:
        assert self.lock.locked()
        self.done.append(("flatten", threading.current_thread().name))
        return "1 closed"

    async def open_day(self, now_ts: float) -> None:
        return None

    def trip(self, why: str, ts: float, key: str = "") -> None:
        assert self.lock.locked()
        self.done.append(("kill", threading.current_thread().name))


class FailingDesk(FakeDesk):
    """A flatten whose order fails midway (a cancel or a sale raising)."""

    async def flatten(self, now_ts: float) -> str:
        # journaled before it acts: a restart from here on stays paused
        self.done.append(("paused in the journal", str(self.journal.controls.paused())))
        raise BrokerError("place_order: the connection was lost")


def test_a_flatten_is_journaled_before_it_acts_and_its_failure_said(tmp_path: Path) -> None:
    alerts = Alerts()
    with Journal(tmp_path / "journal.sqlite") as journal:
        desk = FailingDesk(journal)
        controls = Controls(desk, alerts)  # type: ignore[arg-type]
        # When a flatten fails midway
        with pytest.raises(BrokerError, match="connection was lost"):
            asyncio.run(controls.apply(Control("flatten", "cli", "127.0.0.1:1"), 5.0))
        # Then it was paused in the journal before it acted, and is still (a restart stays)
        assert ("paused in the journal", "True") in desk.done
        assert journal.controls.paused()
        # and its one row says it failed, as its alert does
        failed = "flatten failed: place_order: the connection was lost (paused: check what is held)"
        rows = journal.controls.day("2026-12-01")
        assert [(r["action"], r["result"]) for r in rows] == [("flatten", failed)]
        assert alerts.sent == [("control", f"flatten by cli from 127.0.0.1:1: {failed}")]
        # A flatten that works leaves one row too, with its result
        ok = Controls(FakeDesk(journal), alerts)  # type: ignore[arg-type]
        asyncio.run(ok.apply(Control("flatten", "http", "127.0.0.1:2"), 6.0))
        rows = journal.controls.day("2026-12-01")
        assert rows[-1]["result"] == "flattened: 1 closed; paused" and len(rows) == 2


def _post(port: int, action: str, token: str | None) -> tuple[int, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{action}", data=b"", method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {"text": body.decode()}


def test_a_wrong_or_missing_token_is_refused_401_and_counted(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="the-loop", daemon=True)
    runner.start()

    def on_loop(job: Any) -> Any:  # the journal lives on the loop's thread, as in the bot
        async def call() -> Any:
            return job()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

    journal = on_loop(lambda: Journal(tmp_path / "journal.sqlite"))
    desk = FakeDesk(journal)
    settings = make_settings(tmp_path, monitoring={"control_token": "s3cret"})
    server = StatusServer(0)
    port = server.start()
    assert _post(port, "pause", "s3cret")[0] == 503  # not attached yet: the bot is starting
    controls = Controls(desk, None)  # type: ignore[arg-type]
    gate = on_loop(lambda: attach(server, settings, controls, lambda: 5.0))
    try:
        assert _post(port, "pause", None)[0] == 401
        assert _post(port, "pause", "wrong")[0] == 401
        assert _post(port, "kill", "s3cret!")[0] == 401
        # Then nothing changed, and each refusal was counted
        assert gate.refused == 3 and desk.done == []
        assert b"ibkr_bot_control_refused_total 3.0" in server.metrics()
        assert on_loop(lambda: journal.controls.day("2026-12-01")) == []
        # With the token: acted on the loop's thread, journaled, answered
        code, body = _post(port, "pause", "s3cret")
        assert (code, body["result"]) == (200, "paused: new entries refused")
        assert _post(port, "flatten", "s3cret")[1]["result"] == "flattened: 1 closed; paused"
        assert _post(port, "kill", "s3cret")[0] == 200
        assert _post(port, "nonsense", "s3cret")[0] == 404
        rows = on_loop(lambda: journal.controls.day("2026-12-01"))
    finally:
        server.stop()
        on_loop(journal.close)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
    assert desk.done == [
        ("pause", "the-loop"),
        ("pause", "the-loop"),
        ("flatten", "the-loop"),
        ("kill", "the-loop"),
    ]
    assert [(r["action"], r["source"]) for r in rows] == [
        ("pause", "http"),
        ("flatten", "http"),
        ("kill", "http"),
    ]
    assert rows[0]["peer"].startswith("127.0.0.1:")


def test_a_generated_token_is_written_mode_0600_beside_the_journal(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = token_path(settings)
    assert path == tmp_path / "control.token"
    path.write_text("old\n")
    path.chmod(0o644)  # a file left readable by others is replaced, not reused
    token = start_token(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token(settings) == token != "old" and len(token) >= 32
    assert start_token(settings) != token  # a new one at each start


def test_a_configured_token_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, monitoring={"control_token": "from-the-file"})
    assert start_token(settings) == read_token(settings) == "from-the-file"
    assert not token_path(settings).exists()
