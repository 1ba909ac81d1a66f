"""An option of ours exercised at its expiry, followed into its shares (live, no gateway).

The desk against a fake broker whose account the test plays: a call bought Thursday and
held over Friday's close is gone on Monday and the account holds its shares; it is booked at
intrinsic value, the shares are journaled, counted by the caps, alerted, and sold at the
Monday open. The verdict itself is pure (``verdict``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date, datetime

import pytest

from common.calendar import EXCHANGE_TZ, nyse, zone
from common.messages import OrderIntent, Quote
from supervisor.broker.base import BrokerPosition, Fill, OpenOrder
from supervisor.commands.report import render_text
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.live_exercise import verdict
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.test_desk import CALL, NOW, PUT, intent
from tests.test_live_desk import Alerts, LiveFakeBroker, cycle, result, spy_intent

pytestmark = pytest.mark.timeout(30)


def at(day: int, hour: int, minute: int = 0) -> float:
    """January 2026 in New York (the 8th a Thursday, the 9th the calls' expiry)."""
    return datetime(2026, 1, day, hour, minute, tzinfo=zone(EXCHANGE_TZ)).timestamp()


FRIDAY_CLOSE = at(9, 16)
SATURDAY = at(10, 12)
MONDAY_0931 = at(12, 9, 31)


class ExerciseBroker(LiveFakeBroker):
    """The account's closes, quotes and stock orders as the test says."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.closes: dict[tuple[str, date], float] = {}
        self.bid, self.ask = 690.0, 690.05
        self.stock_orders: list[tuple[str, str, int, float, str]] = []
        self.cancelled: list[int] = []

    async def closing_price(self, symbol: str, day: date) -> float | None:
        return self.closes.get((symbol, day))

    async def quote(self, symbol: str) -> Quote:
        return Quote(symbol, bid=self.bid, ask=self.ask, last=self.bid, close=self.bid)

    async def place_stock_order(
        self, symbol: str, action: str, quantity: int, limit: float, account: str, order_ref: str
    ) -> int:
        order_id = 100 + len(self.stock_orders)
        self.stock_orders.append((symbol, action, quantity, limit, order_ref))
        self.working.append(
            OpenOrder(
                order_id,
                order_ref,
                "Submitted",
                action,
                quantity,
                "LMT",
                symbol,
                "STK",
                limit=limit,
                account="DU111",
                multiplier=1,
            )
        )
        return order_id

    async def cancel_order(self, order_id: int) -> None:
        self.cancelled.append(order_id)
        self.working = [o for o in self.working if o.order_id != order_id]

    def stock(self, quantity: float, symbol: str = "SPY") -> None:
        self.held = [p for p in self.held if p.sec_type != "STK"]
        if quantity:
            self.held.append(
                BrokerPosition(
                    "DU111", symbol, "STK", quantity, 680.0, 756733, market_price=self.bid
                )
            )


def exercise_desk(
    tmp_path, cap: int = 20, **execution
) -> tuple[Desk, ExerciseBroker, Journal, Alerts]:
    settings = make_settings(
        tmp_path,
        execution={"mode": "live", **execution},
        ibkr={"account": "DU111"},
        risk={
            "max_position_per_symbol": cap,
            "max_position_total": 20,
            "one_position_per_direction": False,
        },
    )
    broker = ExerciseBroker(settings)
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
    return desk, broker, journal, alerts


def bought(desk: Desk, broker: ExerciseBroker, n: int = 1, quantity: int = 5) -> str:
    """A bracket of ours whose entry filled at 2.00, its option held at the account, the
    account's stock position seen while it was."""
    intent = spy_intent(n)
    assert cycle(desk, NOW, result(intent)) != [0]
    broker.working = []
    c = intent.contract
    broker.executions.append(
        Fill(f"e{n}", 1, intent.intent_id, "BOT", quantity, 2.0, NOW + 1, 1.0, 901)
    )
    broker.held.append(
        BrokerPosition("DU111", "SPY", "OPT", quantity, 201.0, n, c.expiry, c.strike, c.right.value)
    )
    cycle(desk, NOW + 60)
    return intent.intent_id


def next_week(ts: float) -> OrderIntent:
    """A call of next week's expiry, quoted at ``ts``."""
    return replace(intent(replace(CALL, expiry="20260116"), "i-later"), quote_ts=ts)


def expired_over_the_weekend(broker: ExerciseBroker, close: float, shares: float) -> None:
    broker.held = [p for p in broker.held if p.sec_type != "OPT"]
    broker.executions = []  # Monday: IBKR lists only today's executions
    broker.closes[("SPY", date(2026, 1, 9))] = close
    broker.stock(shares)


def position(journal: Journal, intent_id: str) -> Position:
    p = journal.position(intent_id)
    assert p is not None
    return p


def test_a_call_held_over_its_close_is_booked_exercised_and_its_shares_sold_at_the_open(tmp_path):
    # Given 5 calls (680) of ours bought at 2.00 and held over Friday's close
    desk, broker, journal, alerts = exercise_desk(tmp_path)
    intent_id = bought(desk, broker)
    # When on Monday the option is gone and the account holds 500 SPY (SPY closed at 685)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    cycle(desk, MONDAY_0931)
    # Then the option is booked at its intrinsic value 5.00, as of Friday's close
    p = position(journal, intent_id)
    assert (p.status, p.exit_reason, p.exit_price, p.closed_ts) == (
        "closed",
        "exercised",
        5.0,
        FRIDAY_CLOSE,
    )
    assert p.realized_pnl == pytest.approx((5.0 - 2.0) * 500 - 1.0)
    # and the shares have a row of their own, at the close, alerted once
    (s,) = journal.shares.held()
    assert (s.share_id, s.quantity, s.cost) == (f"{intent_id}:shares", 500, 685.0)
    assert [k for k, _ in alerts.sent].count("exercised") == 1
    # and, the market open, they are sold with a DAY limit at the bid, orderRef <id>:shares
    assert broker.stock_orders == [("SPY", "SELL", 500, 690.0, f"{intent_id}:shares")]
    # When the sale fills
    broker.working = []
    broker.executions = [
        Fill("x1", 100, f"{intent_id}:shares", "SLD", 500, 690.0, MONDAY_0931 + 5, 2.5)
    ]
    broker.stock(0)
    cycle(desk, MONDAY_0931 + 60)
    # Then the row is closed with its P&L (690 - 685) x 500 less the commission, once
    assert journal.shares.held() == []
    (row,) = journal.shares.of_day("2026-01-12")
    assert (row.status, row.exit_reason, row.realized_pnl) == ("closed", "closed", 2497.5)
    cycle(desk, MONDAY_0931 + 120)
    assert len(broker.stock_orders) == 1
    # and the reports say it: Friday the exercise, Monday the shares' sale
    friday = render_text(journal.day_summary("2026-01-09"), tz="America/New_York")
    assert "exercised exit 5.00 realized +1,499.00" in friday
    monday = render_text(journal.day_summary("2026-01-12"), tz="America/New_York")
    assert (
        f"closed +500 SPY from {intent_id} at 685.00: closed at 690.00 realized +2,497.50"
    ) in monday
    assert "P&L: realized +2,497.50" in monday


def test_exercised_shares_count_in_the_caps_and_the_notional_limit(tmp_path):
    # Given 500 SPY exercised from our calls, not sold yet (before Monday's open)
    desk, broker, journal, _ = exercise_desk(tmp_path)
    bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    cycle(desk, at(12, 9, 0))
    assert broker.stock_orders == []  # the session has not opened
    # Then they count as 5 contracts of SPY and 500 x 690 of notional
    held, notional = desk._held(at(12, 9, 0))
    assert held["SPY"] == 5
    assert notional == pytest.approx(500 * 690.0)


def test_with_the_setting_off_the_shares_are_held_counted_and_said_every_day(tmp_path):
    # Given at most 7 contracts of SPY, and exercised shares kept by choice
    desk, broker, journal, alerts = exercise_desk(tmp_path, cap=7, close_exercised_shares=False)
    bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    for ts in (MONDAY_0931, MONDAY_0931 + 60, at(13, 10)):  # Monday twice, then Tuesday
        cycle(desk, ts)
    # Then nothing is sold, they are said once a day, and they take 5 of the 7 contracts
    assert broker.stock_orders == []
    assert [k for k, _ in alerts.sent].count("shares_held") == 2
    broker.net_liquidation = 10_000_000.0  # (their 345,000 of notional fits in 10 %)
    assert cycle(desk, at(13, 10, 5), result(next_week(at(13, 10, 5)))) == [2]


def test_exercised_shares_fill_the_notional_limit(tmp_path):
    # Given 500 SPY held (345,000 at 690) in a 100,000 account with a 10 % notional limit
    desk, broker, journal, _ = exercise_desk(tmp_path, close_exercised_shares=False)
    bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    cycle(desk, MONDAY_0931)
    # Then no new entry fits
    assert cycle(desk, at(12, 10), result(next_week(at(12, 10)))) == [0]
    journal.flush()  # (refusals are committed together)
    (rule,) = journal._db.execute("SELECT rule FROM decisions WHERE intent_id = 'i-later'")
    assert rule[0] == "max_notional_pct"


def test_an_option_gone_out_of_the_money_expired_at_zero(tmp_path):
    desk, broker, journal, _ = exercise_desk(tmp_path)
    intent_id = bought(desk, broker)
    expired_over_the_weekend(broker, close=679.0, shares=0)
    cycle(desk, MONDAY_0931)
    p = position(journal, intent_id)
    assert (p.exit_reason, p.exit_price, p.closed_ts) == ("expired", 0.0, FRIDAY_CLOSE)
    assert journal.shares.held() == [] and broker.stock_orders == []


def test_in_the_money_without_shares_waits_for_the_delivery_until_the_next_open(tmp_path):
    # Given the calls gone in the money, and no shares at the account on Saturday
    desk, broker, journal, _ = exercise_desk(tmp_path)
    intent_id = bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=0)
    cycle(desk, SATURDAY)
    # Then the position waits (IBKR delivers after OCC's processing)
    assert position(journal, intent_id).status == "open"
    # and once Monday's session has opened with none, it expired at 0 (not exercised)
    cycle(desk, MONDAY_0931)
    assert position(journal, intent_id).exit_reason == "expired"


def test_shares_the_user_held_already_are_not_taken_for_an_exercise(tmp_path):
    # Given 300 SPY the user holds, seen while our calls were held
    desk, broker, journal, _ = exercise_desk(tmp_path)
    broker.stock(300)
    intent_id = bought(desk, broker)
    cycle(desk, NOW + 120)
    # When the calls are gone in the money and the account still holds 300
    expired_over_the_weekend(broker, close=685.0, shares=300)
    cycle(desk, MONDAY_0931)
    # Then no shares of ours: expired at 0, nothing sold
    assert position(journal, intent_id).exit_reason == "expired"
    assert broker.stock_orders == []


def test_a_put_exercised_leaves_short_shares_bought_back_at_the_ask(tmp_path):
    desk, broker, journal, _ = exercise_desk(tmp_path)
    intent_id = bought(desk, broker, n=2)  # a put (675)
    expired_over_the_weekend(broker, close=670.0, shares=-500)
    cycle(desk, MONDAY_0931)
    p = position(journal, intent_id)
    assert (p.exit_reason, p.exit_price) == ("exercised", 5.0)
    assert broker.stock_orders == [("SPY", "BUY", 500, 690.05, f"{intent_id}:shares")]


def test_a_working_sale_is_never_doubled_and_is_repriced_as_the_bid_falls(tmp_path):
    desk, broker, journal, _ = exercise_desk(tmp_path)
    intent_id = bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    cycle(desk, MONDAY_0931)
    cycle(desk, MONDAY_0931 + 60)  # still working at the bid: nothing more
    assert len(broker.stock_orders) == 1 and broker.cancelled == []
    broker.bid = 689.0  # the bid falls under the limit: cancelled, then placed again
    cycle(desk, MONDAY_0931 + 120)
    assert broker.cancelled == [100]
    cycle(desk, MONDAY_0931 + 180)
    assert broker.stock_orders[-1] == ("SPY", "SELL", 500, 689.0, f"{intent_id}:shares")


def test_an_order_gone_unseen_is_not_sent_again_the_same_day(tmp_path):
    # Given our sale sent, then no longer listed, with no execution seen (yet)
    desk, broker, journal, _ = exercise_desk(tmp_path)
    bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    cycle(desk, MONDAY_0931)
    broker.working = []
    cycle(desk, MONDAY_0931 + 60)
    # Then no second sale today (sold twice would be short); the next session tries again
    assert len(broker.stock_orders) == 1
    cycle(desk, at(13, 9, 31))
    assert len(broker.stock_orders) == 2
    statuses = [
        r.status for r in journal.orders.of_intent(journal.shares.held()[0].share_id, "shares")
    ]
    assert statuses == ["expired", "submitted"]


def test_shares_sold_by_hand_close_their_row_without_a_price(tmp_path):
    desk, broker, journal, _ = exercise_desk(tmp_path, close_exercised_shares=False)
    bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    cycle(desk, MONDAY_0931)
    broker.stock(0)
    cycle(desk, MONDAY_0931 + 60)
    (row,) = journal.shares.of_day("2026-01-12")
    assert (row.status, row.exit_reason, row.realized_pnl) == ("closed", "gone", 0.0)
    assert desk._held(MONDAY_0931 + 60)[0].get("SPY", 0) == 0


# --- the verdict, pure ---------------------------------------------------------------------

HELD = Position("i", "SPY", CALL, 2, 2.0, 3.0, 1.4, "open", NOW, 2.0, NOW, exited=0)


@pytest.mark.parametrize(
    "p, close, moved, later, expected",
    [
        (HELD, 685.0, 200, False, "exercised"),
        (HELD, 685.0, 150, False, "wait"),  # fewer shares than 2 contracts deliver
        (HELD, 685.0, 0, True, "expired"),  # in the money, nothing delivered by the next open
        (HELD, 679.0, 0, False, "expired"),
        (HELD, 679.97, 200, False, "exercised"),  # our close may differ from OCC's by cents
        (HELD, 679.0, 200, False, "expired"),  # out of the money: shares of someone else's
        (HELD, None, 200, False, "wait"),  # the close not known yet
        (replace(HELD, contract=PUT), 670.0, -200, False, "exercised"),
        (replace(HELD, contract=PUT), 670.0, 200, True, "expired"),
    ],
)
def test_the_verdict(
    p: Position, close: float | None, moved: float, later: bool, expected: str
) -> None:
    assert verdict(p, close, moved, later) == expected


def test_settlement_waits_for_the_close_and_says_so_once(tmp_path, caplog):
    desk, broker, journal, _ = exercise_desk(tmp_path)
    intent_id = bought(desk, broker)
    expired_over_the_weekend(broker, close=685.0, shares=500)
    broker.closes.clear()
    for ts in (SATURDAY, SATURDAY + 60):
        asyncio.run(desk.begin_cycle(ts))
    assert position(journal, intent_id).status == "open"
    assert [r for r in caplog.records if getattr(r, "event", "") == "settlement_waiting"]
