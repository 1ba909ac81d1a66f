"""The dashboard's parts without a browser: the day read from a hand-built journal (every
figure worked out by hand), the served page, its state and its headers, the Host check, the
static export (report --html) and monitoring.bind. The browser test is test_dashboard_e2e.py."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from common.config import Settings
from common.messages import OptionContract, OptionQuote, OrderIntent, Right, Signal
from supervisor.commands.report_html import write_html
from supervisor.journal.dashboard_rows import Prices, day_state, price_of, read_day_state
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.records import DayState
from supervisor.journal.store import Journal
from supervisor.observe.dashboard import Dashboard, PnlTrail, Rate, export_html
from supervisor.observe.http_status import Status, StatusServer
from supervisor.trading.paper import open_from, step
from supervisor.trading.risk import RiskDecision

pytestmark = pytest.mark.timeout(30)

DAY = "2026-01-08"
T = datetime(2026, 1, 8, 15, 30, tzinfo=UTC).timestamp()  # 10:30 in New York
SPY_CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL)
QQQ_CALL = OptionContract("QQQ", "20260109", 610.0, Right.CALL)
HOSTILE = "</script><script>alert(1)</script>"


def _intent(intent_id: str, contract: OptionContract) -> OrderIntent:
    return OrderIntent(
        intent_id,
        1,
        contract.symbol,
        contract,
        Signal.BUY,
        entry_limit=2.00,
        take_profit=3.00,
        stop_loss=1.40,
        premium=2.00,
        confidence=0.6,
        reasons=("hand-built",),
    )


def _fill(j: Journal) -> None:
    """Three cycles a minute apart; SPY bought at 1.98 in the first, sold at its 3.00 take
    profit in the second ((3.00 - 1.98) x 2 x 100 = +204); the third refused as paused. A
    QQQ entry placed in the second waits in the paper book, never filled."""
    for n in (1, 2, 3):
        j.start_cycle(n, DAY, T + 60 * (n - 1))
    j.record_signal(1, DAY, "SPY", "BUY", 0.6, ("ema8 1 > ema21 0", "close 680.50 > vwap 679"))
    j.record_signal(1, DAY, "QQQ", "HOLD", 0.0, ("atm 610 for price 609.90",))
    j.record_signal(2, DAY, "SPY", "BUY", 0.6, ("close 681.25 > vwap 680",))
    j.record_signal(2, DAY, "QQQ", "HOLD", 0.0, (), skipped="no usable price")
    j.record_signal(3, DAY, "SPY", "BUY", 0.6, ("close 682.00 > vwap 680",))
    j.end_cycle(1, T + 2, ok=2, failed=0, seconds=2.0)
    j.end_cycle(2, T + 62, ok=2, failed=0, seconds=2.0)
    j.end_cycle(3, T + 122, ok=1, failed=0, seconds=2.0)
    spy = _intent("i1", SPY_CALL)
    assert j.record_intent(spy, DAY)
    j.record_decision(RiskDecision("i1", True, 2, "ok", "2 contracts"), DAY, T + 1)
    j.record_decision(RiskDecision("i1", False, 0, "paused", HOSTILE), DAY, T + 121)
    j.orders.record("i1", "dry_run", OrderStatus.SIMULATED, 2, T + 1)
    p = step(open_from(spy, 2, T + 1), OptionQuote(SPY_CALL, bid=1.90, ask=1.98), T + 5, 60)
    j.save_position(p, DAY)
    p = step(p, OptionQuote(SPY_CALL, bid=3.05, ask=3.10), T + 61, 60)
    assert p.status == "closed"
    j.save_position(p, DAY)
    qqq = _intent("i2", QQQ_CALL)
    assert j.record_intent(qqq, DAY)
    j.record_decision(RiskDecision("i2", True, 1, "ok", "1 contract"), DAY, T + 61)
    j.save_position(open_from(qqq, 1, T + 61), DAY)
    j.save_day_state(DayState(DAY, 50000.0, False, "", None))
    j.controls.record(DAY, T + 100, "pause", "http", "127.0.0.1:5", "paused")


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as j:
        _fill(j)
    return path


def test_price_is_read_from_the_reasons_the_strategy_wrote() -> None:
    assert price_of(["ema8 1 > ema21 0", "close 269.93 > vwap 268.90"]) == 269.93
    assert price_of(["atm 270 for price 269.93"]) == 269.93
    assert price_of(["rsi 88.9 not in [45, 75]", "whale: close 605.90 inside"]) is None
    assert price_of([]) is None


def test_the_day_from_a_journal(journal: Path) -> None:
    state: Any = read_day_state(journal)  # JSON: read by key, as the page does
    assert state is not None and state["day"] == DAY and state["paused"] is True
    symbols = {s["symbol"]: s for s in state["symbols"]}
    assert symbols["SPY"]["price"] == 682.00 and symbols["SPY"]["signal"] == "BUY"
    assert symbols["SPY"]["decision"]["rule"] == "paused"  # the latest decision
    assert symbols["QQQ"]["skipped"] == "no usable price"
    assert symbols["QQQ"]["price"] == 609.90  # the skipped cycle stated none: the one before
    assert state["series"] == {
        "SPY": [[T, 680.50], [T + 60, 681.25], [T + 120, 682.00]],
        "QQQ": [[T, 609.90]],
    }
    marks = state["marks"]
    assert [(m[0], m[1], m[2], m[3]) for m in marks] == [
        (T + 1, "SPY", "entry", 1.98),
        (T + 61, "QQQ", "order", 2.00),  # placed at its limit, not filled: no exit either
        (T + 61, "SPY", "exit", 3.00),
    ]
    assert marks[2][5] == "take_profit"
    # the start equity, then +204 from the cycle the exit closed in
    assert state["equity"] == [[T + 2, 50000.0], [T + 62, 50204.0], [T + 122, 50204.0]]
    assert [d["rule"] for d in state["decisions"]] == ["paused", "ok", "ok"]  # newest first
    assert [(w["symbol"], w["mode"], w["status"]) for w in state["working"]] == [
        ("QQQ", "paper", "entry waiting")
    ]
    assert [o["status"] for o in state["brackets"]["i1"]] == ["simulated"]
    assert state["summary"]["decisions"]["refused_by_rule"] == {"paused": 1}


def test_nothing_to_show_without_a_journal_or_a_cycle(tmp_path: Path) -> None:
    assert read_day_state(tmp_path / "none.sqlite") is None
    with Journal(tmp_path / "empty.sqlite") as j:
        assert day_state(j) is None


def test_the_export_is_one_file_that_cannot_be_broken_out_of(journal: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "day.html"
    with Journal(journal, readonly=True) as j:
        assert write_html(j, [DAY], out) == 0
        assert write_html(j, [DAY, "2026-01-09"], tmp_path / "two.html") == 2
    page = out.read_text()
    assert 'src="/static' not in page and 'href="/static' not in page  # all inlined
    assert "<script" in page and HOSTILE not in page
    embedded = re.search(r'<script type="application/json" id="state">(.*?)</script>', page, re.S)
    assert embedded is not None
    state = json.loads(embedded.group(1))  # "<\/" is JSON for "</"
    assert state["live"] is None and state["day"]["day"] == DAY
    assert state["day"]["decisions"][0]["reason"] == HOSTILE  # the text kept, as text


def test_export_html_drops_non_finite_numbers() -> None:
    page = export_html({"live": None, "day": {"equity": [[1.0, float("nan")]]}})
    assert "NaN" not in page and "[[1.0, null]]" in page


def _get(port: int, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_server_serves_the_page_its_state_and_nothing_else(journal: Path) -> None:
    server = StatusServer(0, day_state=lambda: read_day_state(journal))
    server.dashboard.universe = ("SPY", "QQQ", "IWM")
    port = server.start()
    try:
        server.publish(
            Status(
                state="trading",
                connected=True,
                market_open=False,
                paused=True,
                next_open_ts=T + 86400,
                session_ts=T + 30,
                day_pnl=-12.345,
                broker={"lines_in_use": 4.0, "messages_sent_total": 120.0},
                processes=(("supervisor", 1),),
            )
        )
        code, headers, body = _get(port, "/")
        assert code == 200 and b'<script src="/static/app.js">' in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert _get(port, "/static/app.js")[0] == 200 and _get(port, "/static/app.css")[0] == 200
        for path in ("/static/../dashboard.py", "/static/index.py", "/api/other"):
            assert _get(port, path)[0] == 404, path
        code, _, body = _get(port, "/api/state")
        state: dict[str, Any] = json.loads(body)
        assert code == 200 and state["live"]["paused"] is True
        assert state["live"]["next_open_ts"] == T + 86400
        assert state["live"]["soak"]["lines_in_use"] == 4
        assert state["live"]["pnl_trail"] == [[T + 30, -12.35]]  # kept from publish, in cents
        assert state["day"]["day"] == DAY
        assert state["live"]["universe"] == ["SPY", "QQQ", "IWM"]  # IWM: no cycle yet
        assert json.loads(_get(port, "/healthz")[2])["paused"] is True
        # a page elsewhere that rebinds its name to 127.0.0.1 reads nothing
        assert _get(port, "/api/state", host=f"evil.example:{port}")[0] == 403
        assert _get(port, "/", host=f"localhost:{port}")[0] == 200
    finally:
        server.stop()


def test_messages_per_second_between_two_reads() -> None:
    now = [100.0]
    rate = Rate(lambda: now[0])
    assert rate.update(1000.0) is None  # one read: no rate yet
    now[0] = 102.0
    assert rate.update(1100.0) == 50.0
    assert rate.update(None) is None


def test_bind_beyond_loopback_needs_a_token() -> None:
    assert Settings().monitoring.bind == "127.0.0.1"
    with pytest.raises(ValueError, match="monitoring.bind[^:]*: .*set monitoring.control_token"):
        Settings.model_validate({"monitoring": {"bind": "0.0.0.0"}})
    with pytest.raises(ValueError, match="not an IPv4 address"):
        Settings.model_validate({"monitoring": {"bind": "everywhere"}})
    wide = Settings.model_validate({"monitoring": {"bind": "0.0.0.0", "control_token": "t0k"}})
    assert wide.monitoring.bind == "0.0.0.0"


def test_beyond_loopback_the_state_needs_the_token_and_the_page_does_not() -> None:
    # Given a server bound to a LAN address (never started: page() is what the thread calls)
    server = StatusServer(0, host="192.168.1.5", token="t0k")
    # When the state is asked for without the token, or with a wrong one: 401, counted
    assert server.page("/api/state", "192.168.1.5:8080")[0] == 401
    code, _, body = server.page("/api/state", "192.168.1.5", "Bearer nope", "10.0.0.9:5")
    assert code == 401 and b"Bearer" in body and server.state_refused == 2
    assert b"ibkr_bot_state_refused_total 2.0" in server.metrics()
    # Then with it, the state; the page and its assets hold no data: open
    code, kind, body = server.page("/api/state", "192.168.1.5", "Bearer t0k")
    assert code == 200 and kind == "application/json" and "live" in json.loads(body)
    assert server.page("/", "192.168.1.5")[0] == 200
    assert server.page("/static/app.js", "192.168.1.5")[0] == 200
    # And without a token configured (the settings refuse that bind) the state is never served
    assert StatusServer(0, host="0.0.0.0").page("/api/state", "h", "Bearer ")[0] == 401
    # And bound to loopback the state is this machine's, as before
    assert StatusServer(0, token="t0k").page("/api/state", "127.0.0.1")[0] == 200
    assert server.state_refused == 2


def test_report_html_from_the_command_line(
    journal: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from supervisor.commands.cli import main

    monkeypatch.setenv("SUPERVISOR_HOME", str(tmp_path))
    out = tmp_path / "day.html"
    assert main(["report", "--journal", str(journal), "--html", str(out)]) == 0
    assert f"dashboard of {DAY} written to {out}" in capsys.readouterr().out
    assert '<script type="application/json" id="state">' in out.read_text()
    empty = tmp_path / "empty.html"
    assert (
        main(["report", "--journal", str(journal), "--day", "2026-01-09", "--html", str(empty)])
        == 0
    )
    assert "nothing journaled in" in capsys.readouterr().err and not empty.exists()


def test_the_pnl_trail_keeps_a_point_per_interval_of_the_session_clock() -> None:
    trail = PnlTrail(every_s=10, points=3)
    for ts, pnl in ((T, 0.0), (T + 5, 1.0), (T + 10, 2.0), (T + 20, None), (T + 21, 3.0)):
        trail.add(Status(session_ts=ts, day_pnl=pnl))
    assert trail.points() == [[T, 0.0], [T + 10, 2.0], [T + 21, 3.0]]
    trail.add(Status(session_ts=T + 40, day_pnl=4.0))  # at most 3: the oldest goes
    assert trail.points()[0] == [T + 10, 2.0]
    trail.add(Status(session_ts=T - 600, day_pnl=0.0))  # the clock went back: a new session
    assert trail.points() == [[T - 600, 0.0]]
    trail.add(Status(session_ts=None, day_pnl=9.0))  # no clock: nothing to place it at
    assert len(trail.points()) == 1


def test_the_cli_reaches_a_bot_bound_elsewhere_and_its_page_answers_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from supervisor.commands.cli import main

    # Given a bot's endpoint bound to another address (a loopback one, as a test can bind)
    asked: list[tuple[str, str]] = []

    def control(action: str, auth: str, source: str, peer: str) -> tuple[int, bytes]:
        asked.append((action, auth))
        return 200, b'{"result": "paused: new entries refused"}'

    server = StatusServer(0, host="127.0.0.2")
    server.control = control
    port = server.start()
    try:
        settings = tmp_path / "s.yaml"
        settings.write_text(
            f"monitoring:\n  http_port: {port}\n  bind: 127.0.0.2\n  control_token: t0k\n"
        )
        monkeypatch.setenv("SUPERVISOR_HOME", str(tmp_path))
        # When the CLI pauses it: it posts to that address, not 127.0.0.1
        assert main(["pause", "--config", str(settings)]) == 0
        assert asked == [("pause", "Bearer t0k")]
        assert "pause: paused: new entries refused" in capsys.readouterr().out
        # and the page answers a Host naming that address
        request = urllib.request.Request(f"http://127.0.0.2:{port}/")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.stop()


def test_prices_are_read_once_and_sampled(journal: Path) -> None:
    prices = Prices()
    with Journal(journal, readonly=True) as j:
        assert day_state(j, DAY, prices) is not None
        seen = prices.seen
        assert seen > 0 and day_state(j, DAY, prices) is not None
        assert prices.seen == seen and len(prices.series["SPY"]) == 3  # nothing read twice
    with Journal(journal) as j:  # a signal journaled since: read alone, appended
        j.start_cycle(4, DAY, T + 180)
        j.record_signal(4, DAY, "SPY", "HOLD", 0.0, ("close 683.00 > vwap 680",))
        j.end_cycle(4, T + 182, ok=1, failed=0, seconds=2.0)
    state: Any = read_day_state(journal, DAY, prices)
    assert prices.series["SPY"][-1] == (T + 180, 683.00) and len(prices.series["SPY"]) == 4
    assert [s["price"] for s in state["symbols"] if s["symbol"] == "SPY"] == [683.00]
    # a long day is sampled for the page: at most SERIES_POINTS, first and last kept
    prices.series["SPY"] = [(T + n, 600.0 + n) for n in range(1000)]
    sampled = prices.sampled(most=120)["SPY"]
    assert len(sampled) <= 120 and sampled[0] == [T, 600.0] and sampled[-1] == [T + 999, 1599.0]
    # another day starts from its own start
    with Journal(journal, readonly=True) as j:
        prices.read(j.store.db, "2026-01-09")
    assert prices.day == "2026-01-09" and prices.series == {} and prices.seen == 0


def test_a_slow_day_read_is_made_less_often() -> None:
    now = [0.0]
    reads: list[float] = []

    def read() -> dict[str, Any]:
        reads.append(now[0])
        now[0] += 0.5  # a big day: half a second to read
        return {"day": DAY}

    board = Dashboard(read, clock=lambda: now[0])
    for at in (0.0, 2.0, 4.0, 5.6, 6.0):
        now[0] = max(now[0], at)
        assert board.day() == {"day": DAY}
    # read at 0 (0.5 s: then at most 10 % of the time: every 5 s), again at 5.6, not between
    assert reads == [0.0, 5.6]
