"""The live flatten made safe (issue 25): the positions to close journaled before any cancel,
the sale placed in the same call once IBKR confirms the exits' cancels (else by the next
cycle, even after a restart), never two sales at once, and the fill booked as "flatten".

No processes, no gateway: the live desk's fake broker (tests/test_live_desk.py), whose cancels
are confirmed at once or only when the test says."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from common.calendar import nyse
from supervisor.broker.base import BrokerPosition, Fill, OpenOrder
from supervisor.journal.store import Journal
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.live_book import LivePositionBook
from supervisor.trading.live_fills import exit_reason_of
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.test_desk import CALL, NOW
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

    def is_connected(self) -> bool:
        return True

    async def cancel_order(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        if not self.slow:
            self.confirm()

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


def _desk(tmp_path: Path, broker: Selling | None = None) -> tuple[Desk, Selling, Journal]:
    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    broker = broker or Selling(settings)
    journal = Journal(settings.execution.journal_path)
    desk = Desk(
        settings,
        broker,
        journal,
        Executor("live", broker, journal, "DU111"),
        SessionBook(broker, nyse()),
    )
    return desk, broker, journal


def _held_with_its_stop(desk: Desk, broker: Selling) -> OpenOrder:
    """A call of ours bought (its bracket's stop working at IBKR); the stop."""
    assert cycle(desk, NOW, result(spy_intent(1))) == [10]
    broker.executions = [Fill("e1", 1, "i-1", "BOT", 10, 2.0, NOW + 1, 1.0, 901)]
    broker.held = [
        BrokerPosition("DU111", "SPY", "OPT", 10, 200.0, 1, CALL.expiry, CALL.strike, "C")
    ]
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
    assert journal.closing.pending() == {"i-1": "flatten"}
    # and the cycles after place no second sale while it works
    asyncio.run(desk.book.follow(NOW + 30, False))
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
