"""The live flatten made safe (issue 25): the positions to close journaled before any cancel,
the sale placed in the same call once IBKR confirms the exits' cancels (else by the next
cycle, even after a restart), never two sales at once, and the fill booked as "flatten".

No processes, no gateway: the live desk's fake broker (tests/test_live_desk.py), whose cancels
are confirmed at once or only when the test says."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from common.calendar import nyse
from supervisor.broker.base import BrokerError, BrokerPosition, Fill, OpenOrder
from supervisor.journal.store import Journal
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.live_book import LivePositionBook
from supervisor.trading.live_fills import exit_reason_of
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.test_desk import CALL, NOW
from tests.test_gateway_wait import Alerts
from tests.test_live_desk import LiveFakeBroker, cycle, result, spy_intent

pytestmark = pytest.mark.timeout(30)


class Selling(LiveFakeBroker):
    """Sales are listed working at once (as a placed order is at IBKR); a cancel is confirmed
    (the order gone from the list) at once, or only at ``confirm()`` when ``slow``."""

    def __init__(self, settings: Any, slow: bool = False) -> None:
        super().__init__(settings)
        self.slow = slow
        self.cancelled: list[int] = []
        self.sold: list[tuple[str, str, int, float, str]] = []
        self.no_bid = False  # a quote outage

    def is_connected(self) -> bool:
        return True

    async def option_quotes(self, contracts: Any) -> Any:
        if self.no_bid:
            raise BrokerError("no market data")
        return await super().option_quotes(contracts)

    async def cancel_order(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        if not self.slow:
            self.confirm()
        else:  # listed PendingCancel until IBKR confirms it
            self.working = [
                replace(o, status="PendingCancel") if o.order_id == order_id else o
                for o in self.working
            ]

    def confirm(self) -> None:
        self.working = [o for o in self.working if o.order_id not in self.cancelled]

    async def place_order(
        self, contract: Any, action: str, quantity: int, limit: float, account: str, ref: str
    ) -> int:
        self.sold.append((contract.key, action, quantity, limit, ref))
        order_id = 70 + len(self.sold)
        self.working.append(_order(order_id, ref, "SELL", "LMT", limit, 800 + order_id))
        return order_id


def _order(
    order_id: int, ref: str, action: str, kind: str, price: float, perm_id: int
) -> OpenOrder:
    return OpenOrder(
        order_id,
        ref,
        "Submitted",
        action,
        10,
        kind,
        "SPY",
        "OPT",
        CALL.expiry,
        CALL.strike,
        "C",
        price,
        perm_id=perm_id,
        parent_id=1 if action == "SELL" and ref == "i-1" else 0,
        account="DU111",
    )


def _desk(
    tmp_path: Path, broker: Selling | None = None, alerts: Alerts | None = None
) -> tuple[Desk, Selling, Journal]:
    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    broker = broker or Selling(settings)
    journal = Journal(settings.execution.journal_path)
    desk = Desk(
        settings,
        broker,
        journal,
        Executor("live", broker, journal, "DU111"),
        SessionBook(broker, nyse()),
        alerts,  # type: ignore[arg-type]
    )
    return desk, broker, journal


def _slow(tmp_path: Path, alerts: Alerts | None = None) -> tuple[Desk, Selling, Journal]:
    """A desk whose broker confirms cancels only at ``confirm()``, and does not wait for it."""
    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    desk, broker, journal = _desk(tmp_path, Selling(settings, slow=True), alerts)
    assert isinstance(desk.book, LivePositionBook)
    desk.book.confirm_s = 0.0
    return desk, broker, journal


HELD = BrokerPosition("DU111", "SPY", "OPT", 10, 200.0, 1, CALL.expiry, CALL.strike, "C")


def _held_with_its_stop(desk: Desk, broker: Selling) -> OpenOrder:
    """A call of ours bought (its bracket's stop working at IBKR); the stop."""
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]
    broker.executions = [Fill("e1", 1, "i-1", "BOT", 10, 2.0, NOW + 1, 1.0, 901)]
    broker.held = [HELD]
    stop = _order(2, "i-1", "SELL", "STP", 1.4, 902)
    broker.working = [stop]
    asyncio.run(desk.book.follow(NOW + 5, False))  # the entry's fill booked: held
    return stop


def _sales(broker: Selling) -> list[tuple[str, str, int, str]]:
    return [(key, action, quantity, ref) for key, action, quantity, _, ref in broker.sold]


def test_the_sale_is_placed_in_the_same_flatten_once_the_cancels_are_confirmed(
    tmp_path: Path,
) -> None:
    desk, broker, journal = _desk(tmp_path)
    stop = _held_with_its_stop(desk, broker)
    assert cycle(desk, NOW + 10, result(spy_intent(2))) == [10]  # and a put entry working
    (entry,) = [o for o in broker.working if o.action == "BUY"]
    # When the trader flattens
    said = asyncio.run(desk.flatten(NOW + 20))
    # Then the entry and the stop are cancelled, and the sale placed in the same call
    assert sorted(broker.cancelled) == sorted([entry.order_id, stop.order_id])
    assert _sales(broker) == [(CALL.key, "SELL", 10, "i-1:expiry")]
    assert broker.sold[0][3] > 0 and "1 position(s) closing" in said and "not placed" not in said
    # the entry's too (it could fill while its cancel is on its way): done once it is gone
    assert journal.closing.pending() == {"i-1": "flatten", "i-2": "flatten"}
    # and the cycles after place no second sale while it works
    asyncio.run(desk.book.follow(NOW + 30, False))
    assert journal.closing.pending() == {"i-1": "flatten"}
    asyncio.run(desk.book.follow(NOW + 40, False))
    assert len(broker.sold) == 1
    # When it fills: the position is closed with exit reason flatten, the closing row gone
    (sale,) = [o for o in broker.working if o.order_ref == "i-1:expiry"]
    broker.working.remove(sale)
    broker.held = []
    broker.executions.append(Fill("e2", sale.order_id, "i-1:expiry", "SLD", 10, 1.5, NOW + 45, 1.0))
    asyncio.run(desk.book.follow(NOW + 50, False))
    closed = journal.position("i-1")
    assert closed is not None and (closed.status, closed.exit_reason) == ("closed", "flatten")
    asyncio.run(desk.book.follow(NOW + 60, False))
    assert journal.closing.pending() == {}
    journal.close()


def test_unconfirmed_cancels_leave_the_sale_to_the_next_cycle_never_beside_the_stop(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    desk, broker, journal = _desk(tmp_path, Selling(settings, slow=True))
    stop = _held_with_its_stop(desk, broker)
    assert isinstance(desk.book, LivePositionBook)
    desk.book.confirm_s = 0.3  # IBKR does not confirm the cancel within the flatten's wait
    said = asyncio.run(desk.flatten(NOW + 20))
    assert broker.cancelled == [stop.order_id] and broker.sold == []
    assert "(1 not placed yet: the next cycle places them)" in said
    # a cycle while the stop is still listed: still no sale (it could sell twice)
    asyncio.run(desk.book.follow(NOW + 30, False))
    assert broker.sold == []
    # once the cancel is confirmed, the next cycle sells, once
    broker.confirm()
    asyncio.run(desk.book.follow(NOW + 40, False))
    asyncio.run(desk.book.follow(NOW + 50, False))
    assert _sales(broker) == [(CALL.key, "SELL", 10, "i-1:expiry")]
    journal.close()


def test_a_restart_between_the_cancels_and_the_sale_finishes_the_flatten(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    desk, broker, journal = _desk(tmp_path, Selling(settings, slow=True))
    stop = _held_with_its_stop(desk, broker)
    assert isinstance(desk.book, LivePositionBook)
    desk.book.confirm_s = 0.0
    asyncio.run(desk.flatten(NOW + 20))
    assert broker.cancelled == [stop.order_id] and broker.sold == []
    journal.close()  # the bot stops before IBKR confirms the cancel
    broker.confirm()
    # When it starts again on the same journal: the start and its first cycle sell, once
    again, _, journal = _desk(tmp_path, broker)
    assert journal.closing.pending() == {"i-1": "flatten"}
    asyncio.run(again.start_live(NOW + 60))
    asyncio.run(again.book.follow(NOW + 70, False))
    asyncio.run(again.book.follow(NOW + 80, False))
    assert _sales(broker) == [(CALL.key, "SELL", 10, "i-1:expiry")]
    (row,) = journal.orders.of_intent("i-1:expiry")
    assert row.details["exit"] == "flatten"
    journal.close()


def test_a_sale_journaled_but_not_listed_yet_is_not_placed_again(tmp_path: Path) -> None:
    desk, broker, journal = _desk(tmp_path)
    _held_with_its_stop(desk, broker)
    asyncio.run(desk.flatten(NOW + 20))
    assert len(broker.sold) == 1
    broker.working = []  # IBKR's list does not show the sale yet
    assert isinstance(desk.book, LivePositionBook)
    asyncio.run(desk.book.exits.step(NOW + 21))
    assert len(broker.sold) == 1
    journal.close()


def test_the_sale_s_reason_is_its_rows_and_an_old_row_reads_expiry(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        from supervisor.journal.order_status import OrderStatus

        journal.orders.record(
            "i-1:expiry", "live", OrderStatus.SUBMITTED, 1, NOW, 71, {"exit": "flatten"}
        )
        journal.orders.record("i-2:expiry", "live", OrderStatus.SUBMITTED, 1, NOW, 72, {})
        flat = journal.orders.of_intent("i-1:expiry")
        old = journal.orders.of_intent("i-2:expiry")
    assert exit_reason_of("i-1:expiry", 71, 0, None, flat) == "flatten"
    assert exit_reason_of("i-2:expiry", 72, 0, None, old) == "expiry"
    assert exit_reason_of("i-3:expiry", 73, 0, None, ()) == "expiry"


def test_with_no_bid_the_flatten_keeps_the_stop_and_says_so(tmp_path: Path) -> None:
    alerts = Alerts()
    desk, broker, journal = _desk(tmp_path, alerts=alerts)
    stop = _held_with_its_stop(desk, broker)
    broker.no_bid = True  # a quote outage
    said = asyncio.run(desk.flatten(NOW + 20))
    # Then nothing is sold and the stop is not cancelled: the position keeps its protection
    assert broker.cancelled == [] and broker.sold == [] and stop in broker.working
    assert "(1 kept its stop: no bid (i-1): the next cycle places them)" in said
    # and a stop now says nothing is left unprotected (the stop works at IBKR)
    asyncio.run(desk.book.close_out(NOW + 25))
    assert not [k for k, _ in alerts.sent if k == "left_unprotected"]
    # once a bid is back, the next cycles cancel the stop, then sell
    broker.no_bid = False
    asyncio.run(desk.book.follow(NOW + 30, False))
    asyncio.run(desk.book.follow(NOW + 40, False))
    assert broker.cancelled == [stop.order_id]
    assert _sales(broker) == [(CALL.key, "SELL", 10, "i-1:expiry")]
    journal.close()


def test_a_stop_while_closing_with_neither_stop_nor_sale_alerts_it(tmp_path: Path) -> None:
    alerts = Alerts()
    desk, broker, journal = _slow(tmp_path, alerts)
    _held_with_its_stop(desk, broker)
    asyncio.run(desk.flatten(NOW + 20))  # the stop's cancel asked, not confirmed yet
    # When the trader stops the bot now (the stop PendingCancel), or once IBKR cancelled it
    asyncio.run(desk.book.close_out(NOW + 25))
    broker.confirm()  # no sale yet (the next cycle's)
    asyncio.run(desk.book.close_out(NOW + 26))
    # Then the position held with nothing working for it is said, to close by hand
    said = [t for k, t in alerts.sent if k == "left_unprotected"]
    assert len(said) == 2 and all("i-1" in t for t in said)
    assert "held with no stop and no sale: close it by hand" in said[0]
    journal.close()


def _filled_instead(broker: Selling, shares: int, commission: float | None) -> None:
    """IBKR fills the stop as its cancel goes out: gone from the open orders, its execution
    in, the account's position not updated yet (still HELD)."""

    async def cancel_order(order_id: int) -> None:
        broker.cancelled.append(order_id)
        broker.working = [o for o in broker.working if o.order_id != order_id]
        fill = Fill("e2", order_id, "i-1", "SLD", shares, 1.4, NOW + 21, commission, 902)
        broker.executions.append(fill)

    broker.cancel_order = cancel_order  # type: ignore[method-assign]


def test_a_stop_that_filled_instead_of_cancelling_is_not_sold_again(tmp_path: Path) -> None:
    desk, broker, journal = _desk(tmp_path)
    _held_with_its_stop(desk, broker)
    _filled_instead(broker, 10, None)  # its commission report not in yet: not booked
    said = asyncio.run(desk.flatten(NOW + 20))
    # Then no sale: what is left is not known until the stop's fill is booked
    assert broker.sold == [] and "1 not placed yet" in said
    asyncio.run(desk.book.follow(NOW + 30, False))
    assert broker.sold == []
    # once booked (its report in, the position gone): closed by its stop, nothing sold
    broker.executions[-1] = replace(broker.executions[-1], commission=1.0)
    broker.held = []
    asyncio.run(desk.book.follow(NOW + 40, False))
    asyncio.run(desk.book.follow(NOW + 50, False))
    closed = journal.position("i-1")
    assert broker.sold == [] and closed is not None and closed.status == "closed"
    assert journal.closing.pending() == {}
    journal.close()


def test_a_stop_that_partly_filled_leaves_only_the_journal_s_rest_to_sell(tmp_path: Path) -> None:
    desk, broker, journal = _desk(tmp_path)
    _held_with_its_stop(desk, broker)
    _filled_instead(broker, 4, 1.0)  # 4 sold by the stop, booked at once; IBKR still says 10
    asyncio.run(desk.flatten(NOW + 20))
    assert _sales(broker) == [(CALL.key, "SELL", 6, "i-1:expiry")]  # not 10: no net short
    journal.close()


def test_a_position_the_broker_does_not_list_yet_is_closed_once_it_does(tmp_path: Path) -> None:
    desk, broker, journal = _desk(tmp_path)
    stop = _held_with_its_stop(desk, broker)
    broker.held = []  # right after a reconnect: the account's positions not in yet
    said = asyncio.run(desk.flatten(NOW + 20))
    assert journal.closing.pending() == {"i-1": "flatten"} and broker.sold == []
    assert "1 position(s) closing" in said and "1 not placed yet" in said
    broker.held = [HELD]
    asyncio.run(desk.book.follow(NOW + 30, False))
    asyncio.run(desk.book.follow(NOW + 40, False))
    assert broker.cancelled == [stop.order_id]
    assert _sales(broker) == [(CALL.key, "SELL", 10, "i-1:expiry")]
    journal.close()


def test_an_entry_filling_while_its_cancel_is_on_its_way_is_closed(tmp_path: Path) -> None:
    desk, broker, journal = _slow(tmp_path)
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]  # an entry working, nothing held
    (entry,) = broker.working
    asyncio.run(desk.flatten(NOW + 20))
    assert broker.cancelled == [entry.order_id] and journal.closing.pending() == {"i-1": "flatten"}
    # When it fills before the cancel takes: held, its bracket's stop working
    stop = _order(2, "i-1", "SELL", "STP", 1.4, 902)
    broker.working = [stop]
    broker.executions = [Fill("e1", entry.order_id, "i-1", "BOT", 10, 2.0, NOW + 21, 1.0, 901)]
    broker.held = [HELD]
    asyncio.run(desk.book.follow(NOW + 30, False))  # booked; its stop's cancel asked
    broker.confirm()
    asyncio.run(desk.book.follow(NOW + 40, False))
    # Then the flatten goes on: sold, once
    assert stop.order_id in broker.cancelled
    assert _sales(broker) == [(CALL.key, "SELL", 10, "i-1:expiry")]
    journal.close()


@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_live_flatten_on_the_simulator_sells_in_the_same_call_once(tmp_path: Path) -> None:
    """``flatten`` from the CLI against ``run --sim --live``: the real adapter's cancels (IBKR's
    PendingCancel, then Cancelled) confirmed within the call, one sale per position, filled
    and booked as flatten."""
    import signal
    import socket
    import subprocess
    import sys

    from tests.conftest_sim import write_scenario
    from tests.external_sim import ExternalSim, bot, bot_env, wait_for
    from tests.sessions import TUESDAY_1500
    from tests.test_live_e2e import LIVE, journal_rows, journaled

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "live.yaml"
    config.write_text(
        LIVE.replace("mode: live\n", "mode: live\n  entry_timeout_s: 3600\n")
        + "risk:\n  max_position_per_symbol: 5\n  one_position_per_direction: false\n"
        + "options:\n  entry_price: ask\n  take_profit_pct: 1000\n  stop_loss_pct: 95\n"
        + f"schedule:\n  regular_hours_only: false\nmonitoring:\n  http_port: {port}\n"
    )
    scenario = write_scenario(
        tmp_path / "scenario.yaml",
        TUESDAY_1500,
        clock={"rate": 30, "market_step_s": 60},
        market_data={"stream_interval_s": 1.0},
    )
    journal = tmp_path / "var" / "journal-sim.sqlite"
    with ExternalSim(tmp_path, scenario) as sim:
        run = [*sim.args, "--config", str(config), "--live", "--interval", "0.5"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run", *run, "--cycles", "0"],
            cwd=tmp_path,
            env=bot_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            # Given a live position of ours held (its bracket's exits working at the gateway)
            wait_for(
                lambda: (
                    journaled(journal, "SELECT 1 FROM positions WHERE status = 'open'")
                    and (tmp_path / "var" / "control.token").exists()
                ),
                120,
                "a live position held",
            )
            # When the trader flattens
            flat = bot(tmp_path, "flatten", "--config", str(config))
            assert flat.returncode == 0, flat.stderr[-2000:]
            # Then the sale was placed in that same call (the cancels confirmed within it)
            assert "position(s) closing with limit orders at the bid" in flat.stdout
            assert "not placed yet" not in flat.stdout, flat.stdout
            sales = journal_rows(
                journal,
                "SELECT intent_id FROM orders WHERE intent_id LIKE '%:expiry' "
                "AND json_extract(details, '$.exit') = 'flatten'",
            )
            assert sales
            # and each filled, booked with exit reason flatten
            wait_for(
                lambda: (
                    len(
                        journal_rows(
                            journal,
                            "SELECT 1 FROM positions WHERE status = 'closed' "
                            "AND exit_reason = 'flatten'",
                        )
                    )
                    >= len(sales)
                ),
                90,
                "the flatten's sales filled",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        stats = sim.stop()
    # never two sales of one position
    assert all(n == 1 for ref, n in stats["orders_by_ref"].items() if ref.endswith(":expiry"))
    assert sum(1 for ref in stats["orders_by_ref"] if ref.endswith(":expiry")) == len(sales)
