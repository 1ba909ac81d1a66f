"""An order row's change of status the journal refuses (IllegalTransition, a bug) never ends
the bot: where the broker drives the change it is said once and the row skipped
(trading/order_moves.py); a bracket IBKR took keeps its ids; the stop goes on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.broker.base import PlacedBracket
from supervisor.journal.order_status import IllegalTransition, OrderStatus
from supervisor.journal.store import Journal
from supervisor.runtime.expiry_timer import close_desk
from supervisor.trading.execution import Executor
from supervisor.trading.order_moves import move
from supervisor.trading.risk import RiskDecision

pytestmark = pytest.mark.timeout(30)

T = 1_767_886_200.0  # 2026-01-08 15:30 UTC, a named instant


def alerts(journal: Journal) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in journal._db.execute("SELECT kind, key FROM alerts ORDER BY id")]


def test_an_illegal_change_is_said_once_and_the_row_left_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a row that never left (not_sent), which the broker's list would make working
    with Journal(tmp_path / "j.sqlite") as journal:
        row = journal.orders.record("SPY-1", "live", OrderStatus.SENDING, 1, T)
        journal.orders.update(row, OrderStatus.NOT_SENT, T)
        caplog.set_level(logging.DEBUG, logger="supervisor.trading.order_moves")
        # When two refreshes in a row drive the same illegal change
        first = move(journal, row, OrderStatus.WORKING, T + 60)
        second = move(journal, row, OrderStatus.WORKING, T + 120)
        (kept,) = journal.orders.of_intent("SPY-1")
        said = alerts(journal)
    # Then nothing is raised or written, one ERROR names the row and both states, one alert
    assert (first, second) == (False, False)
    assert kept.status == OrderStatus.NOT_SENT
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"order row {row}" in errors[0].getMessage()
    assert "'not_sent' cannot change to 'working'" in errors[0].getMessage()
    assert said == [("order_transition", f"{row} -> working")]


class MovingBroker:
    """IBKR takes the bracket; while it was being sent, the row moved on (to done, as a
    refresh that no longer lists it would), so it may not become submitted."""

    name = "ibkr"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        (row,) = self.journal.orders.of_intent(intent.intent_id)
        self.journal.orders.update(row.id, OrderStatus.DONE, T)
        return PlacedBracket((7, 8, 9), (71, 72, 73))


def test_a_bracket_ibkr_took_is_never_lost_when_its_row_may_not_become_submitted(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        contract = OptionContract("SPY", "20261204", 680.0, Right.CALL)
        intent = OrderIntent("SPY-1", 1, "SPY", contract, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ())
        decision = RiskDecision("SPY-1", True, 3, "ok", "within limits")
        executor = Executor("live", MovingBroker(journal), journal, "DU111")  # type: ignore[arg-type]
        done = asyncio.run(executor.execute(intent, decision, "2026-12-01", T, False))
        (row,) = journal.orders.of_intent("SPY-1")
        said = alerts(journal)
    # Then the execution is submitted, and the row carries the bracket's ids to be followed by
    assert done.status == "submitted" and done.quantity == 3
    assert (row.broker_order_id, row.perm_id) == (7, 71)
    assert row.part_ids("perm_ids") == [71, 72, 73]
    assert said == [("order_transition", f"{row.id} -> submitted")]


def test_an_illegal_change_at_the_stop_does_not_skip_the_rest_of_the_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a live book whose close-out meets an illegal change
    async def close_out(now_ts: float) -> None:
        raise IllegalTransition("order row 3 (SPY-1): status 'done' cannot change to 'x'")

    desk = SimpleNamespace(
        broker=SimpleNamespace(is_connected=True),
        settings=SimpleNamespace(execution=SimpleNamespace(close_expiring_on_stop=False)),
        close_out=close_out,
    )
    clock = SimpleNamespace(now=lambda: T)
    # When the desk is closed at the stop, Then it returns (the disconnect and close follow)
    asyncio.run(close_desk(desk, None, clock, SimpleNamespace()))  # type: ignore[arg-type]
    assert any("closing out the live book failed" in r.getMessage() for r in caplog.records)
