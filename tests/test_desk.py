"""The desk: risk, execution modes, the simulated book and the kill switch over a journal.

No processes: SymbolResults are built by hand and the broker is a StubBroker whose account
and option quotes the test controls.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import pytest

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
from supervisor.journal.store import Journal
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)

NOW = 1_767_886_200.0  # 2026-01-08 10:30 New York
CALL = OptionContract("SPY", "20260109", 680.0, Right.CALL)
PUT = OptionContract("SPY", "20260109", 675.0, Right.PUT)


class ControlledBroker(StubBroker):
    """Account equity and option quotes set by the test."""

    def __init__(self, settings, equity: float = 100_000.0) -> None:
        super().__init__(settings.stub, lambda: NOW)
        self.equity = equity
        self.marks: dict[str, tuple[float, float]] = {}

    async def account(self) -> AccountSnapshot:
        return AccountSnapshot("DU111", self.equity, self.equity)

    async def option_quotes(self, contracts: Sequence[OptionContract]):
        return tuple(OptionQuote(c, *self.marks.get(c.key, (math.nan, math.nan)), ts=NOW)
                     for c in contracts)


def intent(contract: OptionContract = CALL, intent_id: str = "i-call") -> OrderIntent:
    signal = Signal.BUY if contract.right is Right.CALL else Signal.SELL
    return OrderIntent(intent_id, 1, "SPY", contract, signal, entry_limit=2.00, take_profit=3.00,
                       stop_loss=1.40, premium=2.00, confidence=0.7, reasons=("test",),
                       bid=1.95, ask=2.05, quote_ts=NOW)


def result(*intents: OrderIntent) -> SymbolResult:
    return SymbolResult(1, "SPY", 1, signal=Signal.BUY, intents=intents)


def desk_for(tmp_path, mode: str = "dry_run", **risk) -> tuple[Desk, ControlledBroker, Journal]:
    settings = make_settings(tmp_path, execution={"mode": mode}, risk=risk)
    broker = ControlledBroker(settings)
    journal = Journal(settings.execution.journal_path)
    executor = Executor(mode, broker, journal)
    return Desk(settings, broker, journal, executor), broker, journal


def run(coro):
    return asyncio.run(coro)


def test_accepted_intent_is_journaled_and_opens_a_pending_position(tmp_path):
    desk, _, journal = desk_for(tmp_path)
    run(desk.begin_cycle(NOW))
    (done,) = run(desk.act_on([result(intent())], NOW))
    # 100,000 x 1 % / (2.00 x 100 x 30 %) = 16, capped by max_contracts_per_order 10
    assert (done.status, done.quantity) == ("simulated", 10)
    assert journal.load_intent("i-call") is not None
    assert desk.book["i-call"].status == "pending"
    assert journal.sent_intents("2026-01-08") == frozenset({"i-call"})


def test_one_position_reaches_take_profit_and_another_stop_loss(tmp_path):
    desk, broker, journal = desk_for(tmp_path)
    run(desk.begin_cycle(NOW))
    run(desk.act_on([result(intent(CALL, "tp"), intent(PUT, "sl"))], NOW))
    # the next cycle: both entries fill (ask at or below the 2.00 limit)
    broker.marks = {CALL.key: (1.90, 2.00), PUT.key: (1.90, 2.00)}
    run(desk.begin_cycle(NOW + 60))
    assert {p.status for p in desk.book.values()} == {"open"}
    # then the call's bid reaches 3.00 (take-profit), the put's bid falls to 1.30 (stop)
    broker.marks = {CALL.key: (3.00, 3.10), PUT.key: (1.30, 1.40)}
    state = run(desk.begin_cycle(NOW + 120))
    tp, sl = desk.book["tp"], desk.book["sl"]
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
