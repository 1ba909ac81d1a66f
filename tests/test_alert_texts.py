"""The alerts a trader keeps switched on (issue 25): every trade alert names its mode
(``dry_run``, ``whatif``, ``LIVE``) with prices in cents; repeated refusals are summarised."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.messages import Right
from supervisor.observe.alerts import cents, mode_label
from supervisor.observe.repeats import PerWindow
from supervisor.trading.execution import Execution, execution_mode
from supervisor.trading.position_book import traded, transition
from supervisor.trading.refusal_alerts import RefusalAlerts
from supervisor.trading.risk import RiskDecision
from tests.test_gateway_wait import Alerts
from tests.test_paper import T0, filled, intent

pytestmark = pytest.mark.timeout(10)


def test_modes_and_prices_as_a_trader_reads_them() -> None:
    assert [mode_label(m) for m in ("dry_run", "whatif", "live")] == ["dry_run", "whatif", "LIVE"]
    assert (cents(1.2345), cents(2.0), cents(None), cents(float("nan"))) == (
        "1.23",
        "2.00",
        "n/a",
        "n/a",
    )


@pytest.mark.parametrize("mode", ["dry_run", "whatif", "live"])
def test_an_entry_alert_says_its_mode(mode: str) -> None:
    decision = RiskDecision("i-1", True, 3, "ok", "accepted")
    text = traded(intent(), Execution("i-1", execution_mode(mode), "submitted", 3, decision))
    assert text.startswith(f"{mode_label(mode)} BUY 3 x ")
    assert " @ " in text and text.split(" @ ")[1][:4].count(".") == 1  # 1.23, not 1.2345


@pytest.mark.parametrize("mode", ["dry_run", "whatif", "live"])
def test_an_exit_alert_says_its_mode_and_rounds_its_price(mode: str) -> None:
    alerts = Alerts()
    closed = replace(
        filled(),
        status="closed",
        exit_reason="take_profit",
        exit_price=2.123456,
        closed_ts=T0 + 60,
    )
    transition(closed, alerts, mode)  # type: ignore[arg-type]
    ((kind, text),) = alerts.sent
    assert kind == "trade" and text.startswith(f"{mode_label(mode)} SELL ")
    assert "(take_profit) at 2.12: P&L " in text and "2.123456" not in text


def test_a_flatten_exit_is_alerted_too() -> None:
    alerts = Alerts()
    closed = replace(filled(), status="closed", exit_reason="flatten", exit_price=1.5)
    transition(closed, alerts, "live")  # type: ignore[arg-type]
    assert alerts.sent and "LIVE SELL" in alerts.sent[0][1] and "(flatten)" in alerts.sent[0][1]


def test_the_first_of_a_kind_is_said_then_repeats_are_counted_for_the_window() -> None:
    window = PerWindow(3600.0)
    assert window.note("max_positions", 0.0) == 0  # said at once, nothing held back
    assert [window.note("max_positions", t) for t in (10.0, 20.0, 30.0)] == [None] * 3
    assert window.note("quote", 40.0) == 0  # another rule has a window of its own
    assert window.due(3599.0) == {}  # the window is not over
    # the window's end says what was held back, once; a quiet window says nothing
    assert window.due(3600.0) == {"max_positions": 3}
    assert window.due(7200.0) == {}
    # after it, the next one is said at once again
    assert window.note("max_positions", 7300.0) == 0
    # a repeat after the window that nobody flushed carries the count held back
    window.note("max_positions", 7310.0)
    assert window.note("max_positions", 7300.0 + 3600.0) == 1


def _refused(rule: str, status: str = "refused", mode: str = "live") -> Execution:
    decision = RiskDecision("i-1", False, 0, rule, f"why {rule}")
    return Execution("i-1", mode, status, 0, decision)  # type: ignore[arg-type]


def test_refusals_by_a_rule_are_one_alert_then_a_count_per_window() -> None:
    alerts = Alerts()
    refusals = RefusalAlerts(alerts, 60, "live")  # type: ignore[arg-type]
    # Given the same rule refusing an intent every cycle for an hour, and IBKR rejecting twice
    # a whatif check (live rejections are each alerted: the test below)
    for minute in range(60):
        refusals.tick(T0 + 60 * minute)
        refusals.after(intent(), _refused("max_positions"), T0 + 60 * minute)
    refusals.after(intent(), _refused("ibkr: 201", "rejected", "whatif"), T0 + 100)
    refusals.after(intent(), _refused("ibkr: 201", "rejected", "whatif"), T0 + 200)
    # and the trader's pause and the kill switch refusing
    refusals.after(intent(), _refused("paused"), T0 + 300)
    refusals.after(intent(), _refused("kill_switch"), T0 + 400)
    # Then the first of each rule was said at once, with the mode, the rule and its reason
    assert [kind for kind, _ in alerts.sent] == ["refused", "order_rejected"]
    assert alerts.sent[0][1].startswith("LIVE refused BUY for ")
    assert "max_positions: why max_positions" in alerts.sent[0][1]
    assert alerts.sent[1][1].startswith("LIVE IBKR refused the BUY bracket for ")
    # and the window's end says how many were held back, per rule, once
    refusals.tick(T0 + 3700)  # both windows over (IBKR's began at T0 + 100)
    assert alerts.sent[2:] == [
        (
            "refused",
            "LIVE: 59 more intent(s) refused by max_positions in the last 60 min "
            "(the first was alerted)",
        ),
        (
            "order_rejected",
            "LIVE: 1 more intent(s) refused by order_rejected in the last "
            "60 min (the first was alerted)",
        ),
    ]
    refusals.tick(T0 + 7200)
    assert len(alerts.sent) == 4


def test_every_live_rejection_is_alerted_at_once_never_counted_away() -> None:
    alerts = Alerts()
    refusals = RefusalAlerts(alerts, 60, "live")  # type: ignore[arg-type]
    # Given IBKR rejecting a bracket, then another contract's within the minute, the second
    # after a part of it had filled (held without its exits)
    put = replace(intent(), intent_id="i-2", contract=replace(intent().contract, right=Right.PUT))
    after_fill = replace(
        _refused("rejected", "rejected"),
        decision=RiskDecision("i-2", False, 0, "rejected", "error 201: margin (a part had filled"),
    )
    refusals.after(intent(), _refused("rejected", "rejected"), T0 + 10)
    refusals.after(put, after_fill, T0 + 20)
    # Then each is its own alert at once, naming its contract and its reason
    assert [kind for kind, _ in alerts.sent] == ["order_rejected", "order_rejected"]
    assert intent().contract.key in alerts.sent[0][1]
    assert put.contract.key in alerts.sent[1][1] and "a part had filled" in alerts.sent[1][1]
    # and no count follows them; even with the refusal alerts off, a live rejection is said
    refusals.tick(T0 + 7200)
    assert len(alerts.sent) == 2
    quiet = Alerts()
    off = RefusalAlerts(quiet, 0, "live")  # type: ignore[arg-type]
    off.after(intent(), _refused("rejected", "rejected"), T0)
    assert [kind for kind, _ in quiet.sent] == ["order_rejected"]


def test_refusal_alerts_can_be_switched_off() -> None:
    alerts = Alerts()
    refusals = RefusalAlerts(alerts, 0, "dry_run")  # type: ignore[arg-type]
    refusals.after(intent(), _refused("max_positions"), T0)
    refusals.tick(T0 + 99_999)
    assert alerts.sent == []
