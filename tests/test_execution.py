"""The one execution gate (supervisor/trading/execution.py): live needs every guard to agree."""

from __future__ import annotations

import asyncio
import json

import pytest

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.broker.base import BrokerError, EntriesStopped, OrderRejected, PlacedBracket
from supervisor.journal.store import Journal
from supervisor.trading.execution import Executor, live_refusal
from supervisor.trading.risk import RiskDecision
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)


# --- live guards: each refuses on its own ----------------------------------------------------


def live_settings(tmp_path, account: str = "DU111", mode: str = "live"):
    return make_settings(tmp_path, execution={"mode": mode}, ibkr={"account": account})


def test_all_three_guards_agreeing_allows_live(tmp_path):
    assert live_refusal(live_settings(tmp_path), True, "ibkr", ["DU111"]) is None


def test_live_refused_without_the_flag(tmp_path):
    why = live_refusal(live_settings(tmp_path), False, "ibkr", ["DU111"])
    assert why is not None and "--live" in why


def test_live_refused_when_the_config_is_not_live(tmp_path):
    why = live_refusal(live_settings(tmp_path, mode="dry_run"), True, "ibkr", ["DU111"])
    assert why is not None and "execution.mode" in why


def test_live_refused_for_another_account(tmp_path):
    why = live_refusal(live_settings(tmp_path), True, "ibkr", ["DU999"])
    assert why is not None and "DU111" in why and "DU999" in why


def test_live_refused_without_a_configured_account(tmp_path):
    why = live_refusal(live_settings(tmp_path, account=""), True, "ibkr", ["DU111"])
    assert why is not None and "ibkr.account" in why


def test_live_refused_on_the_stub(tmp_path):
    why = live_refusal(live_settings(tmp_path), True, "stub", ["DU111"])
    assert why is not None and "IBKR" in why


def test_dry_run_without_the_flag_needs_no_guard(tmp_path):
    assert live_refusal(make_settings(tmp_path), False, "stub", ["STUB0001"]) is None


# --- live sends: journal first, then the gateway's answer -------------------------------------


class AnsweringBroker:
    """place_bracket answers with what the test gives it: a PlacedBracket or an exception."""

    name = "ibkr"

    def __init__(self, answer: PlacedBracket | BrokerError) -> None:
        self.answer = answer
        self.rows_when_sent: list[list[str]] = []
        self.journal: Journal | None = None

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        assert self.journal is not None
        self.rows_when_sent.append(order_statuses(self.journal))
        if isinstance(self.answer, BrokerError):
            raise self.answer
        return self.answer


def order_statuses(journal: Journal) -> list[str]:
    return [r[0] for r in journal._db.execute("SELECT status FROM orders ORDER BY id")]


def live_send(tmp_path, answer: PlacedBracket | BrokerError, stopping: bool = False):
    journal = Journal(tmp_path / "j.sqlite")
    broker = AnsweringBroker(answer)
    broker.journal = journal
    contract = OptionContract("SPY", "20261204", 680.0, Right.CALL)
    intent = OrderIntent("SPY-1", 1, "SPY", contract, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ())
    decision = RiskDecision("SPY-1", True, 3, "ok", "within limits")
    executor = Executor("live", broker, journal, "DU111")  # type: ignore[arg-type]
    done = asyncio.run(executor.execute(intent, decision, "2026-12-01", 1.0, stopping))
    return done, broker, journal


def test_a_live_bracket_is_journaled_as_sending_before_it_goes_out(tmp_path):
    done, broker, journal = live_send(tmp_path, PlacedBracket((7, 8, 9), (71, 72, 73)))
    assert broker.rows_when_sent == [["sending"]]  # a crash now leaves a row to adopt
    assert done.status == "submitted" and done.quantity == 3
    (row,) = journal.orders.live()
    assert (row.broker_order_id, row.perm_id) == (7, 71)


def test_a_refused_bracket_turns_the_decision_into_a_rejection_with_the_code(tmp_path):
    done, _broker, journal = live_send(
        tmp_path, OrderRejected("bracket refused: margin", 201, (7, 8, 9))
    )
    assert done.status == "rejected" and done.quantity == 0
    assert done.decision.rule == "rejected" and "201" in done.decision.reason
    assert order_statuses(journal) == ["rejected"]
    ((accepted, rule, reason),) = journal._db.execute(
        "SELECT accepted, rule, reason FROM decisions"
    ).fetchall()
    assert (accepted, rule) == (0, "rejected") and "margin" in reason
    (details,) = journal._db.execute("SELECT details FROM orders").fetchone()
    assert json.loads(details)["error_code"] == 201


def test_a_bracket_of_unknown_fate_stays_unconfirmed_for_the_reconcile(tmp_path):
    done, _broker, journal = live_send(tmp_path, BrokerError("no answer within 5s"))
    assert done.status == "error"
    assert order_statuses(journal) == ["unconfirmed"]  # one row, followed by its orderRef


def test_once_a_stop_is_asked_for_nothing_new_is_sent(tmp_path):
    done, broker, journal = live_send(
        tmp_path, PlacedBracket((7, 8, 9), (71, 72, 73)), stopping=True
    )
    assert broker.rows_when_sent == [] and done.status == "refused"
    assert done.decision.rule == "stopping" and order_statuses(journal) == []


def test_a_bracket_a_stop_caught_before_it_left_is_refused_not_lost(tmp_path):
    # Given a stop that came while the bracket waited for its pacing slot
    done, _broker, journal = live_send(
        tmp_path, EntriesStopped("bracket SPY-1 not sent: a stop was asked for")
    )
    # Then nothing is in doubt: refused (rule stopping), its row not_sent, the decision too
    assert (done.status, done.quantity, done.decision.rule) == ("refused", 0, "stopping")
    assert order_statuses(journal) == ["not_sent"]
    (rule,) = journal._db.execute("SELECT rule FROM decisions").fetchone()
    assert rule == "stopping"
