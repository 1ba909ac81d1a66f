"""The expiry guard on its own timer (supervisor/trading/expiry_guard.py and
supervisor/runtime/expiry_timer.py): paper positions closed at their exit time between cycles,
during a cycle and at a stop, whatever ``schedule.interval_s`` is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common.calendar import expiry_close, nyse
from common.settings_warnings import settings_warnings
from supervisor.broker.base import BrokerError
from supervisor.journal.store import Journal
from supervisor.runtime.clock import PinnedClock, SimClock
from supervisor.runtime.expiry_timer import close_before_stop, during_cycle, sleep_between_cycles
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.expiry_guard import ExpiryGuard, Held
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.sessions import FRIDAY_1545, FRIDAY_1550
from tests.test_desk import FRIDAY_CALL, FRIDAY_PUT, held, run

pytestmark = pytest.mark.timeout(30)

FRIDAY_1540 = FRIDAY_1545.replace(minute=40)
EXIT_AT = FRIDAY_1545.timestamp()  # 16:00 less risk.exit_before_expiry_min (15)


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, kind: str, text: str, fields: Any = None) -> int:
        self.sent.append((kind, text))
        return 1


def test_the_guard_knows_each_positions_exit_time(tmp_path):
    desk, _, _ = held(tmp_path, FRIDAY_CALL, FRIDAY_PUT)
    guard = ExpiryGuard(desk)
    assert run(guard.next_exit_at(FRIDAY_1540.timestamp())) == EXIT_AT
    assert run(guard.expiring(FRIDAY_1540.timestamp())) == []
    inside = run(guard.expiring(FRIDAY_1550.timestamp()))
    assert sorted(h.key for h in inside) == sorted([FRIDAY_CALL.key, FRIDAY_PUT.key])


def test_a_long_interval_still_closes_at_the_exit_time(tmp_path):
    # Given two positions expiring Friday at 16:00, a cycle just ended at 15:40, and
    # schedule.interval_s 1200: the next cycle would start at 16:00, after the close
    desk, broker, journal = held(tmp_path, FRIDAY_CALL, FRIDAY_PUT)
    broker.marks = {FRIDAY_CALL.key: (2.40, 2.50), FRIDAY_PUT.key: (0.80, 0.90)}
    clock = SimClock(FRIDAY_1540.timestamp())
    # When the loop sleeps until the next cycle
    run(sleep_between_cycles(clock, 1200, asyncio.Event(), ExpiryGuard(desk), asyncio.Lock()))
    # Then both were sold at their bids at 15:45, exit reason expiry, and the sleep went on
    closed = {
        p.contract.key: (p.exit_reason, p.exit_price, p.closed_ts)
        for p in desk.book.positions.values()
    }
    at = pytest.approx(EXIT_AT, abs=1.0)  # the stub's clock also flows while it runs
    assert closed == {FRIDAY_CALL.key: ("expiry", 2.40, at), FRIDAY_PUT.key: ("expiry", 0.80, at)}
    assert journal.open_positions() == []
    assert clock.now() >= FRIDAY_1540.timestamp() + 1200


def test_no_bid_is_tried_again_inside_the_window(tmp_path):
    desk, broker, _ = held(tmp_path, FRIDAY_CALL)
    broker.marks = {}  # no bid at 15:45
    clock = SimClock(FRIDAY_1540.timestamp())
    guard, lock, stop = ExpiryGuard(desk), asyncio.Lock(), asyncio.Event()
    run(sleep_between_cycles(clock, 5 * 60 + 10, stop, guard, lock))
    (p,) = desk.book.positions.values()
    assert p.active  # nothing to sell to yet
    broker.marks = {FRIDAY_CALL.key: (1.10, 1.20)}
    run(sleep_between_cycles(clock, 60, stop, guard, lock))
    (p,) = desk.book.positions.values()
    assert (p.exit_reason, p.exit_price) == ("expiry", 1.10)
    assert EXIT_AT < p.closed_ts <= EXIT_AT + 60 + 10 + 30


def test_a_cycle_running_through_the_exit_time_does_not_hold_the_guard_up(tmp_path):
    # Given a position and a clock half a second before its exit time, a cycle running
    desk, broker, _ = held(tmp_path, FRIDAY_CALL)
    broker.marks = {FRIDAY_CALL.key: (2.40, 2.50)}
    clock = PinnedClock(EXIT_AT - 0.5)

    async def cycle() -> None:
        async with during_cycle(clock, ExpiryGuard(desk), desk.lock):
            while any(p.active for p in desk.book.positions.values()):
                await asyncio.sleep(0.02)  # the cycle goes on meanwhile

    # Then the guard closes it during the cycle, at (or just past) its exit time
    asyncio.run(asyncio.wait_for(cycle(), 20))
    (p,) = desk.book.positions.values()
    assert p.exit_reason == "expiry" and EXIT_AT <= p.closed_ts < EXIT_AT + 10


def test_a_stop_inside_the_window_closes_first(tmp_path):
    desk, broker, _ = held(tmp_path, FRIDAY_CALL, FRIDAY_PUT)
    broker.marks = {FRIDAY_CALL.key: (2.40, 2.50), FRIDAY_PUT.key: (0.80, 0.90)}
    alerts = Alerts()
    run(
        close_before_stop(
            SimClock(FRIDAY_1550.timestamp()),
            ExpiryGuard(desk),
            desk.lock,
            alerts,  # type: ignore[arg-type]
            lambda: True,
        )
    )
    assert {p.exit_reason for p in desk.book.positions.values()} == {"expiry"}
    assert alerts.sent == []


def test_a_stop_that_cannot_close_says_what_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr("supervisor.runtime.expiry_timer.STOP_CLOSE_S", 0.3)
    monkeypatch.setattr("supervisor.runtime.expiry_timer.STOP_RETRY_S", 0.05)
    desk, broker, _ = held(tmp_path, FRIDAY_CALL)
    broker.marks = {}  # no bid: nothing to sell to
    alerts = Alerts()
    run(
        close_before_stop(
            SimClock(FRIDAY_1550.timestamp()),
            ExpiryGuard(desk),
            desk.lock,
            alerts,  # type: ignore[arg-type]
            lambda: True,
        )
    )
    ((kind, text),) = alerts.sent
    assert kind == "expiring_left_open" and FRIDAY_CALL.key in text


def test_a_stop_outside_any_window_closes_nothing(tmp_path):
    desk, broker, _ = held(tmp_path, FRIDAY_CALL)
    broker.marks = {FRIDAY_CALL.key: (2.40, 2.50)}
    run(
        close_before_stop(
            SimClock(FRIDAY_1540.timestamp()),
            ExpiryGuard(desk),
            desk.lock,
            Alerts(),  # type: ignore[arg-type]
            lambda: True,
        )
    )
    assert all(p.active for p in desk.book.positions.values())


def test_settings_that_leave_the_guard_alone_are_warned(tmp_path):
    assert settings_warnings(make_settings(tmp_path)) == []
    (text,) = settings_warnings(make_settings(tmp_path, schedule={"interval_s": 1200}))
    assert "schedule.interval_s (1200 s)" in text and "exit_before_expiry_min (15 min)" in text
    (text,) = settings_warnings(
        make_settings(tmp_path, execution={"close_expiring_on_stop": False})
    )
    assert "may be exercised" in text


class SlowGuard:
    """A guard whose runs take a while and whose first look at what is held fails."""

    def __init__(self) -> None:
        self.looks = 0
        self.runs: list[str] = []

    async def held(self, now: float) -> list[Held]:
        self.looks += 1
        if self.looks == 1:
            raise BrokerError("connection lost")
        return [Held("SPY 20261204 680C", now - 1, now + 600)]  # inside its window

    async def run(self, now: float) -> None:
        self.runs.append("begun")
        await asyncio.sleep(0.3)
        self.runs.append("ended")


def test_a_cycles_end_lets_a_guard_run_finish_and_a_broker_error_is_survived():
    guard = SlowGuard()

    async def cycle() -> None:
        guarded = during_cycle(PinnedClock(EXIT_AT), guard, asyncio.Lock())  # type: ignore[arg-type]
        async with guarded:
            while not guard.runs:  # the first look failed; the timer looked again and ran
                await asyncio.sleep(0.01)
        # the block ended in the middle of a run: that run ended whole, and no other began
        assert guard.runs == ["begun", "ended"]

    asyncio.run(asyncio.wait_for(cycle(), 20))


def test_a_stop_without_a_connection_does_not_wait_and_says_what_is_left(tmp_path):
    desk, broker, _ = held(tmp_path, FRIDAY_CALL)
    broker.marks = {FRIDAY_CALL.key: (2.40, 2.50)}
    alerts = Alerts()
    run(
        close_before_stop(
            SimClock(FRIDAY_1550.timestamp()),
            ExpiryGuard(desk),
            desk.lock,
            alerts,  # type: ignore[arg-type]
            lambda: False,
        )
    )
    ((kind, text),) = alerts.sent
    assert kind == "expiring_left_open" and FRIDAY_CALL.key in text


def test_live_exits_wait_for_a_complete_view_of_the_accounts_orders(tmp_path):
    # Given a live desk holding a contract it bought, inside its exit window
    from types import SimpleNamespace

    from common.calendar import nyse
    from supervisor.broker.base import BrokerPosition
    from supervisor.trading.live_book import LivePositionBook
    from supervisor.trading.sessions import SessionBook

    calls: list[str] = []
    refreshed = {"ok": False}

    async def live_step(now: float, halted: bool) -> bool:
        calls.append("live.step")
        return refreshed["ok"]

    async def exits_step(now: float) -> None:
        calls.append("live_exits.step")

    async def cancel_entries_in(keys: set[str], now: float) -> None:
        calls.append("cancel_entries_in")

    position = BrokerPosition(
        "DU1", "SPY", "OPT", 10, 200.0, 1, FRIDAY_CALL.expiry, FRIDAY_CALL.strike, "C"
    )

    async def no_hours(symbol: str) -> None:
        return None

    broker = SimpleNamespace(
        positions=lambda: [position], open_orders=lambda: [], regular_hours=no_hours
    )
    desk = SimpleNamespace(
        settings=make_settings(tmp_path),
        state=None,
        broker=broker,
        journal=SimpleNamespace(bought_contracts=lambda: {FRIDAY_CALL.key: "i-1"}),
        sessions=SessionBook(broker, nyse()),
        alerter=None,
    )
    # the live book's own exits, its parts played by the test
    book = LivePositionBook(desk)
    book.followed = SimpleNamespace(follow=lambda now: 0)  # type: ignore[assignment]
    book.orders = SimpleNamespace(step=live_step, cancel_entries_in=cancel_entries_in)  # type: ignore[assignment]
    book.exits = SimpleNamespace(step=exits_step)  # type: ignore[assignment]
    desk.book = book
    guard = ExpiryGuard(desk)  # type: ignore[arg-type]
    # When the account's orders cannot be refreshed, nothing is sold (an exit of another
    # client id could be working unseen); once they are, the exit goes
    run(guard.run(FRIDAY_1550.timestamp()))
    assert calls == ["live.step"]
    refreshed["ok"] = True
    run(guard.run(FRIDAY_1550.timestamp()))
    assert calls == ["live.step", "live.step", "cancel_entries_in", "live_exits.step"]


def test_a_live_entry_filled_during_a_cycle_is_seen_by_the_guard_at_once(tmp_path):
    # Given a live desk whose bracket for a call expiring the next day was just sent, and
    # filled at IBKR before the next cycle could book the fill
    from supervisor.broker.base import BrokerPosition, Fill
    from tests.test_desk import CALL, NOW
    from tests.test_live_desk import cycle, live_desk, result, spy_intent

    desk, broker, _ = live_desk(tmp_path)
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]
    broker.executions = [Fill("e1", 1, "i-1", "BOT", 10, 2.0, NOW + 1, 1.0, 901)]
    broker.held = [
        BrokerPosition("DU111", "SPY", "OPT", 10, 200.0, 1, CALL.expiry, CALL.strike, "C")
    ]
    # When the guard looks (no cycle in between): the position is ours, with its exit time
    (h,) = run(ExpiryGuard(desk).held(NOW + 60))
    assert h.key == CALL.key and h.exit_at < h.close


def test_a_live_entry_still_working_in_the_exit_window_is_cancelled(tmp_path):
    # Given a live entry resting unfilled at IBKR in a contract expiring at 16:00: a limit
    # that fills at 15:59 would be held into the expiry (seen in a run under a busy clock)
    from tests.test_desk import CALL, NOW, intent
    from tests.test_live_desk import CancellingBroker, cycle, result

    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    broker = CancellingBroker(settings)
    journal = Journal(settings.execution.journal_path)
    desk = Desk(
        settings,
        broker,
        journal,
        Executor("live", broker, journal, "DU111"),
        SessionBook(broker, nyse()),
    )
    assert cycle(desk, NOW, result(intent(CALL, "i-1"))) == [10]
    (entry,) = broker.working
    guard = ExpiryGuard(desk)
    # Then it counts as held for the guard, and inside its window the guard cancels it
    close = expiry_close(CALL.expiry)
    assert close is not None
    exit_at = close - 15 * 60
    assert run(guard.next_exit_at(NOW)) == exit_at
    run(guard.run(exit_at + 1))
    assert broker.cancelled == [entry.order_id] and broker.working == []
