"""The desk: risk, execution modes, the simulated book and the kill switch over a journal.

No processes: SymbolResults are built by hand and the broker is a StubBroker whose account
and option quotes the test controls.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import date

import pytest

from common.calendar import nyse
from common.messages import (
    OptionContract,
    OptionQuote,
    OrderIntent,
    Right,
    Signal,
    SymbolResult,
)
from supervisor.broker.base import AccountSnapshot
from supervisor.broker.stub import StubBroker
from supervisor.commands.report import render_text
from supervisor.journal.store import Journal
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.sessions import (
    CHRISTMAS,
    FRIDAY_1550,
    FRIDAY_1558,
    MONDAY_0931,
    SATURDAY_NOON,
    TUESDAY_MORNING,
)

pytestmark = pytest.mark.timeout(30)

NOW = 1_767_886_200.0  # 2026-01-08 10:30 New York
CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL)
PUT = OptionContract("SPY", "20260109", 675.0, Right.PUT)


class ControlledBroker(StubBroker):
    """Account equity, option quotes and closing prices set by the test."""

    def __init__(self, settings, equity: float = 100_000.0) -> None:
        super().__init__(settings.stub, lambda: NOW)
        self.equity = equity
        self.marks: dict[str, tuple[float, float]] = {}
        self.closes: dict[tuple[str, str], float] = {}  # (symbol, YYYY-MM-DD) -> close
        self.quoted: list[str] = []

    async def account(self) -> AccountSnapshot:
        return AccountSnapshot("DU111", self.equity, self.equity)

    async def option_quotes(self, contracts: Sequence[OptionContract]):
        self.quoted += [c.key for c in contracts]
        return tuple(
            OptionQuote(c, *self.marks.get(c.key, (math.nan, math.nan)), ts=NOW) for c in contracts
        )

    async def closing_price(self, symbol: str, day: date) -> float | None:
        return self.closes.get((symbol, day.isoformat()))


def intent(contract: OptionContract = CALL, intent_id: str = "i-call") -> OrderIntent:
    signal = Signal.BUY if contract.right is Right.CALL else Signal.SELL
    return OrderIntent(
        intent_id,
        1,
        "SPY",
        contract,
        signal,
        entry_limit=2.00,
        take_profit=3.00,
        stop_loss=1.40,
        premium=2.00,
        confidence=0.7,
        reasons=("test",),
        bid=1.95,
        ask=2.05,
        quote_ts=NOW,
    )


def result(*intents: OrderIntent) -> SymbolResult:
    return SymbolResult(1, "SPY", 1, signal=Signal.BUY, intents=intents)


def desk_for(tmp_path, mode: str = "dry_run", **risk) -> tuple[Desk, ControlledBroker, Journal]:
    settings = make_settings(tmp_path, execution={"mode": mode}, risk=risk)
    broker = ControlledBroker(settings)
    journal = Journal(settings.execution.journal_path)
    executor = Executor(mode, broker, journal)
    sessions = SessionBook(broker, nyse())
    return Desk(settings, broker, journal, executor, sessions), broker, journal


def run(coro):
    return asyncio.run(coro)


def test_accepted_intent_is_journaled_and_opens_a_pending_position(tmp_path):
    desk, _, journal = desk_for(tmp_path)
    run(desk.begin_cycle(NOW))
    (done,) = run(desk.act_on([result(intent())], NOW))
    # 100,000 x 1 % / (2.00 x 100 x 30 %) = 16, capped by max_contracts_per_order 10
    assert (done.status, done.quantity) == ("simulated", 10)
    assert journal.load_intent("i-call") is not None
    assert desk.book.positions["i-call"].status == "pending"
    assert journal.sent_intents("2026-01-08") == frozenset({"i-call"})


def test_one_position_reaches_take_profit_and_another_stop_loss(tmp_path):
    desk, broker, journal = desk_for(tmp_path)
    run(desk.begin_cycle(NOW))
    run(desk.act_on([result(intent(CALL, "tp"), intent(PUT, "sl"))], NOW))
    # the next cycle: both entries fill (ask at or below the 2.00 limit)
    broker.marks = {CALL.key: (1.90, 2.00), PUT.key: (1.90, 2.00)}
    run(desk.begin_cycle(NOW + 60))
    assert {p.status for p in desk.book.positions.values()} == {"open"}
    # then the call's bid reaches 3.00 (take-profit), the put's bid falls to 1.30 (stop)
    broker.marks = {CALL.key: (3.00, 3.10), PUT.key: (1.30, 1.40)}
    state = run(desk.begin_cycle(NOW + 120))
    tp, sl = desk.book.positions["tp"], desk.book.positions["sl"]
    assert (tp.exit_reason, tp.exit_price) == ("take_profit", 3.00)
    assert (sl.exit_reason, sl.exit_price) == ("stop_loss", 1.30)
    # 10 x 100 x (+1.00) and 10 x 100 x (-0.70): the book's P&L moves the risk equity
    assert tp.realized_pnl == pytest.approx(1000.0)
    assert sl.realized_pnl == pytest.approx(-700.0)
    assert state.equity == pytest.approx(100_300.0)
    assert {p.intent_id for p in journal.positions("2026-01-08") if not p.active} == {"tp", "sl"}


def test_kill_switch_trips_and_stays_tripped_after_a_restart(tmp_path):
    # Given a 3 % daily loss limit and equity that falls 3.5 % after the day started
    desk, broker, journal = desk_for(tmp_path)
    run(desk.begin_cycle(NOW))
    broker.equity = 96_500.0
    state = run(desk.begin_cycle(NOW + 60))
    assert state.halted
    (refused,) = run(desk.act_on([result(intent())], NOW + 60))
    assert (refused.status, refused.decision.rule) == ("refused", "kill_switch")
    journal.close()
    # When the supervisor restarts the same day, even with equity recovered
    desk2, broker2, journal2 = desk_for(tmp_path)
    broker2.equity = 101_000.0
    state2 = run(desk2.begin_cycle(NOW + 120))
    # Then the switch is still on, and the alert was recorded once
    assert state2.halted and state2.start_equity == 100_000.0
    (again,) = run(desk2.act_on([result(intent(intent_id="other"))], NOW + 120))
    assert again.decision.rule == "kill_switch"
    alerts = journal2.day_summary("2026-01-08")["alerts"]
    assert [a["kind"] for a in alerts] == ["kill_switch"]


def test_intent_sent_before_a_restart_is_never_sent_again(tmp_path):
    desk, _, journal = desk_for(tmp_path)
    run(desk.begin_cycle(NOW))
    run(desk.act_on([result(intent())], NOW))
    journal.close()
    desk2, _, journal2 = desk_for(tmp_path)
    run(desk2.begin_cycle(NOW + 60))
    (done,) = run(desk2.act_on([result(intent())], NOW + 60))
    assert (done.status, done.decision.rule) == ("refused", "duplicate")
    assert journal2.orders_count("2026-01-08") == 1


def test_whatif_records_margin_and_commission_without_an_order(tmp_path):
    desk, _, journal = desk_for(tmp_path, mode="whatif")
    run(desk.begin_cycle(NOW))
    (done,) = run(desk.act_on([result(intent())], NOW))
    assert done.status == "checked"
    (whatif,) = journal.day_summary("2026-01-08")["whatifs"]
    # a long option's margin is its premium: 2.00 x 100 x 10 contracts
    assert whatif["init_margin_change"] == pytest.approx(2000.0)
    assert whatif["commission"] == pytest.approx(6.5)


# --- the trading day: entry window, exits before expiry, settlement, re-entry ----------------

FRIDAY_CALL = OptionContract("SPY", "20261204", 680.0, Right.CALL)
FRIDAY_PUT = OptionContract("SPY", "20261204", 690.0, Right.PUT)
DAY = "2026-12-01"


def friday_intent(
    contract: OptionContract = FRIDAY_CALL, ts: float | None = None, intent_id: str = "i-fri"
) -> OrderIntent:
    return replace(intent(contract, intent_id), quote_ts=ts or TUESDAY_MORNING.timestamp())


def held(tmp_path, *contracts: OptionContract, **risk: float):
    """A desk holding one filled position per contract, entered Tuesday morning."""
    desk, broker, journal = desk_for(tmp_path, "dry_run", **risk)
    t0 = TUESDAY_MORNING.timestamp()
    run(desk.begin_cycle(t0))
    intents = [friday_intent(c, t0, f"i-{i}") for i, c in enumerate(contracts)]
    done = run(desk.act_on([result(*intents)], t0))
    assert [d.status for d in done] == ["simulated"] * len(contracts)
    broker.marks = {c.key: (1.90, 2.00) for c in contracts}
    run(desk.begin_cycle(t0 + 60))
    assert {p.status for p in desk.book.positions.values()} == {"open"}
    return desk, broker, journal


def test_entries_are_refused_outside_each_symbols_entry_window(tmp_path):
    desk, _, journal = desk_for(tmp_path)
    for moment, rule in (
        (SATURDAY_NOON, "market_hours"),
        (CHRISTMAS, "market_hours"),
        (FRIDAY_1550, "entry_window"),
        (MONDAY_0931, "entry_window"),
    ):
        run(desk.begin_cycle(moment.timestamp()))
        (done,) = run(
            desk.act_on([result(friday_intent(ts=moment.timestamp()))], moment.timestamp())
        )
        assert (done.status, done.decision.rule) == ("refused", rule), moment
    refused = journal.day_summary("2026-12-04")["decisions"]["refused_by_rule"]
    assert refused == {"entry_window": 1}


def test_nothing_is_held_into_friday_s_close(tmp_path):
    # Given a call and a put expiring Friday, both filled on Tuesday
    desk, broker, journal = held(tmp_path, FRIDAY_CALL, FRIDAY_PUT)
    # When Friday 15:44 comes (before the exit time 15:45), they are held
    broker.marks = {FRIDAY_CALL.key: (2.40, 2.50), FRIDAY_PUT.key: (1.60, 1.70)}
    run(desk.begin_cycle(FRIDAY_1550.timestamp() - 6 * 60))
    assert {p.status for p in desk.book.positions.values()} == {"open"}
    # Then at 15:50 both sell at the bid, exit reason "expiry", well before 16:00
    run(desk.begin_cycle(FRIDAY_1550.timestamp()))
    exits = {p.contract.key: (p.exit_reason, p.exit_price) for p in desk.book.positions.values()}
    assert exits == {FRIDAY_CALL.key: ("expiry", 2.40), FRIDAY_PUT.key: ("expiry", 1.60)}
    closed = journal.day_summary("2026-12-04")["positions"]["closed"]
    assert {c["exit_reason"] for c in closed} == {"expiry"}


def test_held_over_expiry_settles_at_intrinsic_value_from_the_close(tmp_path):
    # Given positions the exit never reached (no cycle ran on Friday afternoon)
    desk, broker, journal = held(tmp_path, FRIDAY_CALL, FRIDAY_PUT)
    broker.quoted.clear()
    # When Monday's first cycle runs before the close is known, nothing is booked at 0
    run(desk.begin_cycle(MONDAY_0931.timestamp()))
    assert {p.status for p in desk.book.positions.values()} == {"open"}
    assert broker.quoted == []  # a delisted contract's NaN quote is never asked for
    # Then, with Friday's close at 684.50: the 680 call is worth 4.50, the 690 put 5.50
    broker.closes[("SPY", "2026-12-04")] = 684.50
    run(desk.begin_cycle(MONDAY_0931.timestamp() + 60))
    settled = {
        p.contract.key: (p.exit_reason, p.exit_price, p.realized_pnl)
        for p in desk.book.positions.values()
    }
    assert settled == {
        FRIDAY_CALL.key: ("expired", 4.50, pytest.approx(2500.0)),
        FRIDAY_PUT.key: ("expired", 5.50, pytest.approx(3500.0)),
    }
    assert journal.open_positions() == []
    # and it is booked on the expiry's own day, at its close: Friday's report shows it at
    # intrinsic value, Monday's (the day it was booked) holds none of it
    friday = render_text(journal.day_summary("2026-12-04"), tz="America/New_York")
    assert (
        "closed BUY 10 x SPY 20261204 680C (signal BUY, confidence 0.70) entry 2.00 "
        "(limit 2.00) tp 3.00 sl 1.40 expired exit 4.50 realized +2,500.00"
    ) in friday
    assert "P&L: realized +6,000.00" in friday
    monday = journal.day_summary("2026-12-07")
    assert monday["pnl"]["realized"] == 0 and not monday["positions"]["closed"]
    assert {p.closed_ts for p in desk.book.positions.values()} == {
        FRIDAY_1558.replace(hour=16, minute=0).timestamp()
    }


def test_a_missed_exit_never_trips_the_next_days_kill_switch(tmp_path):
    # Given a call held over Friday's close, which ends below its strike: the whole premium
    # lost (2.00 x 10 x 100 = 2,000 on a 100,000 account, past a 1.5 % daily loss limit)
    desk, broker, journal = held(tmp_path, FRIDAY_CALL, daily_loss_limit_pct=1.5)
    broker.closes[("SPY", "2026-12-04")] = 675.00
    # When Monday's first cycles settle it
    run(desk.begin_cycle(MONDAY_0931.timestamp()))
    state = run(desk.begin_cycle(MONDAY_0931.timestamp() + 60))
    # Then Friday carries the loss, and Monday starts clean: no kill switch tripped
    (p,) = desk.book.positions.values()
    assert (p.exit_reason, p.exit_price) == ("expired", 0.0)
    assert journal.day_summary("2026-12-04")["pnl"]["realized"] == pytest.approx(-2000.0)
    assert journal.day_summary("2026-12-07")["pnl"]["realized"] == 0
    assert not state.halted and journal.day_state("2026-12-07").halted is False


def test_an_out_of_the_money_position_settles_worthless(tmp_path):
    desk, broker, _ = held(tmp_path, FRIDAY_CALL)
    broker.closes[("SPY", "2026-12-04")] = 670.0
    run(desk.begin_cycle(SATURDAY_NOON.timestamp()))
    (p,) = desk.book.positions.values()
    assert (p.exit_reason, p.exit_price, p.realized_pnl) == ("expired", 0.0, -2000.0)


def test_one_position_per_direction_and_re_entry_after_a_close(tmp_path):
    desk, broker, journal = held(tmp_path, FRIDAY_CALL)
    t1 = TUESDAY_MORNING.timestamp() + 120
    # a second call on the next strike while the first is held: refused
    next_strike = replace(FRIDAY_CALL, strike=681.0)
    (second,) = run(desk.act_on([result(friday_intent(next_strike, t1, "i-next"))], t1))
    assert second.decision.rule == "already_positioned"
    # the same contract again while held: a duplicate
    (again,) = run(desk.act_on([result(friday_intent(FRIDAY_CALL, t1, "i-0"))], t1))
    assert again.decision.rule == "duplicate"
    # once the position stopped out, the same contract is entered again under a new id
    broker.marks = {FRIDAY_CALL.key: (1.30, 1.40)}
    run(desk.begin_cycle(t1 + 60))
    (reentry,) = run(desk.act_on([result(friday_intent(FRIDAY_CALL, t1 + 60, "i-0"))], t1 + 60))
    assert (reentry.status, reentry.intent_id) == ("simulated", "i-0.2")
    assert journal.load_intent("i-0.2") is not None
    assert journal.sent_intents(DAY) == frozenset({"i-0", "i-0.2"})


def test_an_order_says_its_side_not_the_signal(tmp_path, caplog):
    desk, _, journal = desk_for(tmp_path)
    t0 = TUESDAY_MORNING.timestamp()
    run(desk.begin_cycle(t0))
    put = friday_intent(FRIDAY_PUT, t0)
    with caplog.at_level("INFO"):
        run(desk.act_on([result(put)], t0))
    line = next(r.getMessage() for r in caplog.records if "DRY_RUN" in r.getMessage())
    assert line.startswith("DRY_RUN BUY 10 x SPY 20261204 690P @ 2.00")
    assert "(signal SELL, confidence 0.70)" in line
    loaded = journal.load_intent("i-fri")
    assert loaded is not None and loaded.action == "BUY"


def test_a_second_trip_keeps_the_first_reason_and_time(tmp_path):
    # a kill from the CLI, then another (or the daily loss later): the day stays halted by
    # the first, as report's "HALTED at" and the first kill_switch alert say
    desk, _, journal = desk_for(tmp_path)
    run(desk.begin_cycle(NOW))
    desk.trip("kill by cli from 127.0.0.1:1", NOW + 1, key="control")
    desk.trip("kill by cli from 127.0.0.1:2", NOW + 5, key="control")
    saved = journal.day_state("2026-01-08")
    assert saved is not None
    assert (saved.halted_reason, saved.halted_ts) == ("kill by cli from 127.0.0.1:1", NOW + 1)
