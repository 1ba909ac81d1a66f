"""The desk in live mode: the broker's view (positions, working orders, its own P&L) counts.

No processes, no gateway: a StubBroker whose order side the test plays (brackets placed are
listed as working BUYs; positions and the account's P&L are set by the test).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from common.calendar import nyse
from common.messages import OrderIntent, SymbolResult
from supervisor.broker.base import (
    AccountSnapshot,
    BrokerPosition,
    Fill,
    OpenOrder,
    PlacedBracket,
)
from supervisor.broker.stub import StubBroker
from supervisor.commands.report import render_text
from supervisor.journal.store import Journal
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.test_desk import CALL, NOW, PUT, intent, result

pytestmark = pytest.mark.timeout(30)

DAY = "2026-01-08"


class LiveFakeBroker(StubBroker):
    """Brackets placed become working BUY entries; the account is what the test says."""

    def __init__(self, settings) -> None:
        super().__init__(settings.stub, lambda: NOW)
        self.net_liquidation = 100_000.0
        self.daily_pnl = math.nan
        self.held: list[BrokerPosition] = []
        self.working: list[OpenOrder] = []
        self.executions: list[Fill] = []
        self.placed: list[tuple[str, int]] = []

    async def account(self) -> AccountSnapshot:
        return AccountSnapshot(
            "DU111",
            self.net_liquidation,
            self.net_liquidation,
            daily_pnl=self.daily_pnl,
            realized_pnl=0.0,
            unrealized_pnl=0.0,
        )

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        n = len(self.placed) * 3 + 1
        self.placed.append((intent.intent_id, quantity))
        c = intent.contract
        self.working.append(
            OpenOrder(
                n,
                intent.intent_id,
                "Submitted",
                "BUY",
                quantity,
                "LMT",
                c.symbol,
                "OPT",
                c.expiry,
                c.strike,
                c.right.value,
                intent.entry_limit,
                perm_id=900 + n,
                account="DU111",
            )
        )
        return PlacedBracket((n, n + 1, n + 2), (900 + n, 901 + n, 902 + n))

    async def refresh_orders(self) -> None:
        return None

    def open_orders(self) -> list[OpenOrder]:
        return list(self.working)

    def positions(self) -> list[BrokerPosition]:
        return list(self.held)

    def fills(self) -> list[Fill]:
        return list(self.executions)


def live_desk(tmp_path, **risk) -> tuple[Desk, LiveFakeBroker, Journal]:
    settings = make_settings(
        tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"}, risk=risk
    )
    broker = LiveFakeBroker(settings)
    journal = Journal(settings.execution.journal_path)
    desk = Desk(
        settings,
        broker,
        journal,
        Executor("live", broker, journal, "DU111"),
        SessionBook(broker, nyse()),
    )
    return desk, broker, journal


def cycle(desk: Desk, ts: float, *results: SymbolResult) -> list[int]:
    asyncio.run(desk.begin_cycle(ts))
    return [e.quantity for e in asyncio.run(desk.act_on(list(results), ts))]


def spy_intent(n: int) -> OrderIntent:
    contract = CALL if n % 2 else PUT
    return intent(contract, f"i-{n}")


def test_working_entries_fill_the_cap_cycle_after_cycle(tmp_path):
    # Given caps of 5 contracts per symbol, one position per direction off (to see the cap)
    desk, broker, _journal = live_desk(
        tmp_path, max_position_per_symbol=5, one_position_per_direction=False
    )
    # Then live places 5, then nothing: the working entry counts like a position
    placed = [cycle(desk, NOW + 60 * n, result(spy_intent(n))) for n in range(3)]
    assert placed == [[5], [0], [0]]
    assert broker.placed == [("i-0", 5)]


def test_a_position_the_bot_never_bought_counts_and_is_reported_once(tmp_path):
    desk, broker, journal = live_desk(tmp_path, max_position_per_symbol=5)
    broker.held = [BrokerPosition("DU111", "SPY", "OPT", 4, 210.0, 1, "20260116", 690.0, "C")]
    # (a put: the held call blocks a second call entry, by the one-per-direction rule)
    assert cycle(desk, NOW, result(spy_intent(2))) == [1]  # 5 - 4 held by hand
    cycle(desk, NOW + 60, result(spy_intent(4)))
    alerts = journal._db.execute("SELECT kind, text FROM alerts").fetchall()
    assert [a[0] for a in alerts].count("unknown_position") == 1
    assert "did not buy" in alerts[0][1]


def test_held_premium_counts_against_the_notional_limit(tmp_path):
    # Given a 10 % notional limit (10,000 of 100,000) and 45 contracts held at 2.00 (9,000)
    desk, broker, _journal = live_desk(
        tmp_path,
        max_notional_pct=10.0,
        max_position_per_symbol=100,
        max_position_total=100,
        max_contracts_per_order=100,
    )
    broker.held = [BrokerPosition("DU111", "QQQ", "OPT", 45, 200.0, 1, "20260116", 600.0, "P")]
    # Then one more 2.00 contract costs 200: 5 fit in the 1,000 left
    assert cycle(desk, NOW, result(spy_intent(1))) == [5]


def test_the_daily_loss_is_read_from_the_brokers_pnl(tmp_path):
    # Given equity that has not moved since the first cycle, but IBKR reporting -2,500 today
    desk, broker, journal = live_desk(tmp_path, daily_loss_limit_pct=2.0)
    broker.daily_pnl = -2_500.0
    assert cycle(desk, NOW, result(spy_intent(1))) == [0]
    assert desk.state is not None and desk.state.halted
    state = journal.day_state(DAY)
    assert state is not None and "2.50%" in state.halted_reason


def test_a_net_short_position_trips_the_kill_switch(tmp_path):
    desk, broker, journal = live_desk(tmp_path)
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]
    broker.working = []  # 5 bought, then the take-profit and the stop both sold 5
    broker.executions = [
        Fill("e1", 1, "i-1", "BOT", 5, 2.0, NOW + 1, 1.0, 901),
        Fill("e2", 2, "i-1", "SLD", 5, 3.0, NOW + 5, 1.0, 902),
        Fill("e3", 3, "i-1", "SLD", 5, 1.4, NOW + 6, 1.0, 903),
    ]
    cycle(desk, NOW + 60)
    assert desk.state is not None and desk.state.halted
    (reason,) = journal._db.execute("SELECT halted_reason FROM day_state").fetchone()
    assert "net short 5" in reason


def test_the_report_shows_the_brokers_figures_beside_the_journals(tmp_path):
    desk, broker, journal = live_desk(tmp_path)
    broker.daily_pnl = 123.45
    cycle(desk, NOW)
    text = render_text(journal.day_summary(DAY), tz="America/New_York")
    assert "broker P&L (IBKR, as of 10:30:00): daily +123.45" in text


def test_a_net_short_found_at_start_trips_the_kill_switch_without_crashing(tmp_path):
    # Given a journal that sent a bracket, and executions IBKR replays at the next start:
    # bought 5, then both exits sold 5 (the bot was down meanwhile)
    desk, broker, journal = live_desk(tmp_path)
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]
    journal.close()
    desk, broker, journal = live_desk(tmp_path)
    broker.executions = [
        Fill("e1", 1, "i-1", "BOT", 5, 2.0, NOW + 1, 1.0, 901),
        Fill("e2", 2, "i-1", "SLD", 5, 3.0, NOW + 5, 1.0, 902),
        Fill("e3", 3, "i-1", "SLD", 5, 1.4, NOW + 6, 1.0, 903),
    ]
    asyncio.run(desk.start_live(NOW + 60))
    assert desk.state is not None and desk.state.halted
    state = journal.day_state(DAY)
    assert state is not None and state.halted and "net short 5" in state.halted_reason


def test_an_option_of_ours_held_short_at_ibkr_trips_the_kill_switch(tmp_path):
    desk, broker, journal = live_desk(tmp_path)
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]  # a call of ours: journaled
    broker.held = [
        BrokerPosition("DU111", "SPY", "OPT", -3, 150.0, 1, CALL.expiry, CALL.strike, "C")
    ]
    cycle(desk, NOW + 60)
    assert desk.state is not None and desk.state.halted
    (reason,) = journal._db.execute("SELECT halted_reason FROM day_state").fetchone()
    assert "IBKR holds -3 x SPY" in reason


def test_a_stop_asked_for_while_a_bracket_waits_stops_the_rest_of_the_cycle(tmp_path):
    desk, broker, _journal = live_desk(
        tmp_path, max_position_per_symbol=100, one_position_per_direction=False
    )
    asked = iter([False, True, True])  # SIGTERM arrives while the first bracket is placed
    asyncio.run(desk.begin_cycle(NOW))
    done = asyncio.run(
        desk.act_on(
            [result(spy_intent(1), spy_intent(2), spy_intent(3))], NOW, stopping=lambda: next(asked)
        )
    )
    assert [d.status for d in done] == ["submitted", "refused", "refused"]
    assert [d.decision.rule for d in done[1:]] == ["stopping", "stopping"]
    assert len(broker.placed) == 1


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, kind: str, text: str, fields: object = None) -> int:
        self.sent.append((kind, text))
        return 1

    def send_once(self, key: str, kind: str, text: str, fields: object = None) -> bool:
        self.sent.append((kind, text))
        return True


class CancellingBroker(LiveFakeBroker):
    """A cancel takes the order off the working list, as IBKR confirms it."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.cancelled: list[int] = []

    def is_connected(self) -> bool:
        return True

    async def cancel_order(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        self.working = [o for o in self.working if o.order_id != order_id]


def test_a_stop_cancels_working_entries_and_keeps_the_exits_of_what_is_held(tmp_path):
    # Given a live desk with one entry still working, and the exits of a held position
    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    broker = CancellingBroker(settings)
    journal = Journal(settings.execution.journal_path)
    alerts = Alerts()
    desk = Desk(
        settings,
        broker,
        journal,
        Executor("live", broker, journal, "DU111"),
        SessionBook(broker, nyse()),
        alerts,  # type: ignore[arg-type]
    )
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]
    (entry,) = broker.working
    held_exit = OpenOrder(
        50,
        "i-1",
        "Submitted",
        "SELL",
        10,
        "STP",
        PUT.symbol,
        "OPT",
        PUT.expiry,
        PUT.strike,
        "P",
        1.0,
        perm_id=950,
        parent_id=49,
        account="DU111",
    )
    broker.working.append(held_exit)
    # When the bot stops
    asyncio.run(desk.close_out(NOW + 30))
    # Then the entry was cancelled, the exit stays, and what stays is said: log, alert
    assert broker.cancelled == [entry.order_id]
    assert broker.working == [held_exit]
    ((kind, text),) = [a for a in alerts.sent if a[0] == "left_working"]
    assert "SELL 10 x SPY" in text and "STP" in text


def test_a_stop_can_leave_entries_working_by_choice(tmp_path):
    settings = make_settings(
        tmp_path,
        execution={"mode": "live", "cancel_entries_on_stop": False},
        ibkr={"account": "DU111"},
    )
    broker = CancellingBroker(settings)
    journal = Journal(settings.execution.journal_path)
    desk = Desk(
        settings,
        broker,
        journal,
        Executor("live", broker, journal, "DU111"),
        SessionBook(broker, nyse()),
        Alerts(),  # type: ignore[arg-type]
    )
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]
    asyncio.run(desk.close_out(NOW + 30))
    assert broker.cancelled == [] and len(broker.working) == 1
    alerts = journal._db.execute("SELECT kind FROM alerts WHERE kind = 'left_working'")
    assert len(alerts.fetchall()) == 1
