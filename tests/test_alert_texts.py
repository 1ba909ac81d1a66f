"""The alerts a trader keeps switched on (issue 25): every trade alert names its mode
(``dry_run``, ``whatif``, ``LIVE``) with prices in cents; repeated refusals are summarised."""

from __future__ import annotations

from dataclasses import replace

import pytest

from supervisor.observe.alerts import cents, mode_label
from supervisor.observe.repeats import PerWindow
from supervisor.trading.execution import Execution, execution_mode
from supervisor.trading.position_book import traded, transition
from supervisor.trading.risk import RiskDecision
from tests.test_paper import T0, filled, intent

pytestmark = pytest.mark.timeout(10)


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, kind: str, text: str, fields: object = None) -> int:
        self.sent.append((kind, text))
        return 1


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
