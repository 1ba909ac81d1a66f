"""IBKRBroker end to end: the real ib_insync client against the simulated gateway (loopback).

Each test runs its own broker in a fresh event loop on a worker thread (``run_client``); the
simulators run in their own threads. Faulted symbols live on ``fault_sim``; the pacing round
runs on ``round_sim`` with a small line limit so the line semaphore has to work.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import yaml

from common.calendar import nyse, trading_day
from common.config import OptionsSettings, Settings
from common.messages import OptionContract, OrderIntent, Right, Signal, SymbolTask
from common.settings_file import parse_settings
from supervisor.broker.base import SymbolDataError
from supervisor.broker.ibkr.broker import IBKRBroker
from supervisor.commands.check import drive
from supervisor.runtime.serving import DataService, fetch_bars
from supervisor.trading.sessions import SessionBook
from tests.conftest import REPO_ROOT
from tests.conftest_sim import DEFAULT_SCENARIO, make_scenario, next_client_id, run_client
from tests.sessions import (
    AFTER_FALL_BACK,
    CHRISTMAS,
    DAY_BEFORE_THANKSGIVING,
    FRIDAY_1555,
    MONDAY_0931,
    SATURDAY_NOON,
    TUESDAY_1000,
    TUESDAY_MORNING,
    TUESDAY_NIGHT,
)
from tools.gateway_sim import ThreadedSim, scenario_from_dict
from workers.intents import fill_greeks
from workers.pipeline import process_symbol, request_ids
from workers.strategy import ScalpWhaleStrategy
from workers.strikes import select_contracts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
T = TypeVar("T")
ZONE = ZoneInfo("US/Eastern")
ACCOUNT = "DU1234567"

FAULTS = [
    {"kind": "no_market_data", "symbol": "SYM03", "code": 354, "every_connection": True},
    {"kind": "no_market_data", "symbol": "SYM04", "code": 10197, "every_connection": True},
    {"kind": "no_market_data", "symbol": "SYM10", "code": 10168, "every_connection": True},
    {"kind": "no_market_data", "symbol": "SYM13", "code": 10167, "every_connection": True},
    {"kind": "snapshot_never_ends", "symbol": "SYM11", "every_connection": True},
    {"kind": "historical_never_answers", "symbol": "SYM12", "every_connection": True},
]


@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSim]:
    with ThreadedSim(make_scenario(TUESDAY_MORNING, faults=FAULTS)) as server:
        yield server


@pytest.fixture(scope="module")
def round_sim() -> Iterator[ThreadedSim]:
    scenario = make_scenario(
        TUESDAY_MORNING,
        rules={"max_market_data_lines": 22},
        latency={"snapshot_end_s": 0.5, "historical_s": 0.05},
    )
    with ThreadedSim(scenario) as server:
        yield server


def settings(
    port: int, ibkr: dict[str, Any] | None = None, pacing: dict[str, Any] | None = None
) -> Settings:
    raw: dict[str, Any] = {
        "ibkr": {
            "port": port,
            "client_id": next_client_id(),
            "connect_timeout_s": 3,
            "snapshot_timeout_s": 1.0,
            "historical_timeout_s": 1.0,
            "request_timeout_s": 3,
            "reconnect_initial_s": 0.3,
            "reconnect_max_s": 0.5,
            **(ibkr or {}),
        },
        "pacing": pacing or {},
    }
    return parse_settings(raw, "test", environ={})


def with_broker(
    sim: ThreadedSim,
    body: Callable[[IBKRBroker], Awaitable[T]],
    *,
    now: Callable[[], float] | None = None,
    timeout_s: float = 30,
    **sections: dict[str, Any],
) -> T:
    """Connect a broker on the sim's clock (or ``now``), run ``body``, disconnect; in a
    fresh loop."""

    async def main() -> T:
        broker = IBKRBroker(settings(sim.port, **sections), now=now or sim.now)
        await broker.connect()
        try:
            return await body(broker)
        finally:
            await broker.disconnect()

    return run_client(main, timeout_s)


async def assert_nothing_left(broker: IBKRBroker, lines: bool = True) -> None:
    """No ticker, future, result or contract of a finished request left in ib_insync, and
    (once the cancels of completed snapshots have gone out) no market-data line held."""
    if lines:
        await wait_until(lambda: broker.stats()["lines_in_use"] == 0)
    stats = broker.stats()
    assert stats["live_tickers"] == 0, stats
    assert stats["pending_requests"] == 0, stats
    wrapper = broker.ib.wrapper
    maps = {
        "reqId2Ticker": wrapper.reqId2Ticker,
        "_results": wrapper._results,
        "_reqId2Contract": wrapper._reqId2Contract,
        "snapshot tickers": wrapper.ticker2ReqId.get("snapshot", {}),
    }
    assert {name: len(m) for name, m in maps.items() if m} == {}
    if lines:
        assert stats["lines_in_use"] == 0, stats


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def today(sim: ThreadedSim) -> datetime:
    """The sim's session day: the pinned moment, never the wall clock's."""
    return datetime.fromtimestamp(sim.now(), ZONE)


# --- connect, account, quotes ---------------------------------------------------------------


def test_connect_sees_the_account(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        return broker.is_connected(), broker.managed_accounts(), await broker.account()

    connected, accounts, account = with_broker(sim, body)
    assert connected and accounts == [ACCOUNT]
    assert account.account == ACCOUNT and account.currency == "USD"
    assert account.net_liquidation == 100_000 and account.available_funds == 95_000


def test_quote_has_finite_prices_and_leaves_nothing_behind(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        quote = await broker.quote("SPY")
        await assert_nothing_left(broker)
        return quote

    q = with_broker(sim, body)
    assert q.symbol == "SPY"
    for price in (q.bid, q.ask, q.last, q.close):
        assert math.isfinite(price) and 500 < price < 900
    assert q.bid < q.ask and abs(q.ts - sim.now()) < 10
    # a stock's volume is not waited for (no decision reads it): its tick may come in a read
    # after the prices' (the sim's thread preempted between the two, on a busy machine)
    assert math.isnan(q.volume) or q.volume > 0


def test_quote_quirks_come_through_unsanitised(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        return [await broker.quote(s) for s in ("SYM05", "SYM06", "SYM09")]

    minus_one, missing, zero = with_broker(sim, body)
    assert minus_one.bid == -1 and minus_one.ask == -1 and minus_one.last > 0
    assert math.isnan(missing.bid) and math.isnan(missing.ask)
    assert zero.bid == 0 or zero.ask == 0


def test_delayed_only_data_is_refused_when_live_is_configured(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        with pytest.raises(SymbolDataError, match="10167"):
            await broker.quote("SYM13")
        await assert_nothing_left(broker)
        return broker.stats()

    stats = with_broker(sim, body)
    assert stats["warnings.10167"] == 1


# --- chain, bars, options -------------------------------------------------------------------


def test_chain_of_spy_is_cached(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        first = await broker.chain("SPY")
        second = await broker.chain("SPY")
        return first, second, broker.stats()

    before = sim.stats()["messages_by_type"].get("78", 0)
    chain, again, stats = with_broker(sim, body)
    assert again is chain and stats["chain_requests_total"] == 1
    assert sim.stats()["messages_by_type"]["78"] == before + 1
    assert chain.symbol == "SPY" and chain.exchange == "SMART" and chain.multiplier == 100
    assert 350 <= len(chain.strikes) <= 450 and list(chain.strikes) == sorted(chain.strikes)
    assert len(chain.expirations) >= 10 and list(chain.expirations) == sorted(chain.expirations)
    assert chain.expirations[0] >= today(sim).strftime("%Y%m%d")


def test_bars_are_completed_ascending_and_fetched_incrementally(sim: ThreadedSim) -> None:
    # The broker's clock runs behind the sim's, so "completed" is decided by the broker and
    # a later call can be made to look a few minutes later without waiting.
    lag = {"s": 240.0}

    def now() -> float:
        return sim.now() - lag["s"]

    async def body(broker: IBKRBroker) -> Any:
        sent0 = sim.stats()["bars_sent"]
        first = await broker.bars("SPY", 120)
        sent1 = sim.stats()["bars_sent"]
        lag["s"] = 120.0  # two minutes "later"
        second = await broker.bars("SPY", 120)
        sent2 = sim.stats()["bars_sent"]
        third = await broker.bars("SPY", 120)  # same minute: from the cache alone
        # the whale rule's request: 22 hourly bars of regular sessions, over trading days
        hourly = await fetch_bars(broker, nyse(), broker.now(), "SPY", 22, 60, rth=True)
        return first, second, third, hourly, (sent1 - sent0, sent2 - sent1), broker.stats()

    first, second, third, hourly, sent, stats = with_broker(sim, body, now=now)
    for bars in (first, second):
        assert len(bars) == 120
        assert all(b - a == 60 for a, b in zip(bars.ts, bars.ts[1:], strict=False))
        assert all(math.isfinite(c) and c > 0 for c in bars.close)
        assert all(lo <= hi for lo, hi in zip(bars.low, bars.high, strict=True))
    assert first.ts[-1] + 60 <= sim.now() - 240 + 1  # completed as of the broker's clock
    assert second.ts[-1] == first.ts[-1] + 120 and second.ts[0] == first.ts[0] + 120
    assert list(third.ts) == list(second.ts)
    # the first request sent ~122 bars, the incremental one only the few new ones
    assert sent[0] >= 120 and sent[1] <= 6
    assert stats["bars_requests_total"] == 3 and stats["bars_cache_hits_total"] == 1
    assert len(hourly) == 22 and list(hourly.ts) == sorted(hourly.ts)
    # every one of them inside a regular session (the 09:30 bar is stamped 09:00)
    for ts in hourly.ts:
        session = nyse().session(datetime.fromtimestamp(ts, ZONE).date())
        assert session is not None and session.open_ts - 1800 <= ts < session.close_ts
    days = {datetime.fromtimestamp(ts, ZONE).date() for ts in hourly.ts}
    assert len(days) >= 4  # a Tuesday morning reaches back over the weekend and Thanksgiving


def spy_options(
    chain_strikes: tuple[float, ...], expiry: str, price: float, n: int, right: Right = Right.CALL
) -> list[OptionContract]:
    near = sorted(chain_strikes, key=lambda k: abs(k - price))[:n]
    return [OptionContract("SPY", expiry, k, right, 100, "SMART", "SPY") for k in sorted(near)]


def test_option_quotes_with_greeks_and_an_unlisted_strike(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        chain = await broker.chain("SPY")
        spot = (await broker.quote("SPY")).last
        calls = spy_options(chain.strikes, chain.expirations[0], spot, 4)
        puts = spy_options(chain.strikes, chain.expirations[0], spot, 2, Right.PUT)
        bogus = OptionContract(
            "SPY", chain.expirations[0], 12345.0, Right.CALL, 100, "SMART", "SPY"
        )  # an expiry and right asked for, a strike not listed
        details_before = sim.stats()["messages_by_type"].get("9", 0)
        quotes = await broker.option_quotes((*calls, *puts, bogus))
        # the next strikes of the same expiry (a price that moved) need no qualifying
        more = spy_options(chain.strikes, chain.expirations[0], spot, 8)[4:]
        await broker.option_quotes(tuple(more))
        details = sim.stats()["messages_by_type"].get("9", 0) - details_before
        await assert_nothing_left(broker)
        return spot, quotes, details

    spot, quotes, details = with_broker(sim, body)
    # one contract-details request per expiry and right, not one per contract
    assert details == 2
    *listed, unlisted = quotes
    assert unlisted.contract.strike == 12345.0 and math.isnan(unlisted.bid)
    assert math.isnan(unlisted.delta)
    for q in listed:
        assert q.ask > 0 or q.ask == -1  # every 17th SPY strike quotes -1 (scenario quirk)
        assert 0 < q.iv < 2 and q.gamma > 0 and q.vega > 0 and q.theta < 0
        assert abs(q.und_price - spot) / spot < 0.01
        assert (0 < q.delta < 1) if q.contract.right is Right.CALL else (-1 < q.delta < 0)


def test_atm_window_end_to_end_with_fallback_greeks_for_a_no_greeks_strike() -> None:
    # Given QQQ at 10:00 on the pinned Tuesday, priced at one instant for the first minute:
    # its ATM call is on a strike the default scenario quotes without model greeks
    # (every 23rd strike of the grid), so the candidates hold both kinds
    opts = OptionsSettings()
    scenario = make_scenario(TUESDAY_1000, clock={"market_step_s": 60})
    quirk = next(q for q in scenario.quirks if q.kind == "no_greeks")
    assert quirk.symbol == "QQQ" and quirk.every_nth_strike == 23

    async def body(broker: IBKRBroker) -> Any:
        chain = await broker.chain("QQQ")
        quote = await broker.quote("QQQ")
        price = (quote.bid + quote.ask) / 2
        day = datetime.fromtimestamp(broker.now(), ZONE).date()
        selection = select_contracts(chain, price, Right.CALL, day, opts)
        return price, day, chain, selection, await broker.option_quotes(selection.candidates)

    with ThreadedSim(scenario) as sim:
        price, day, chain, selection, quotes = with_broker(sim, body)
        grid = sim.server.market.book.chains["QQQ"].index

    # When the window and candidates are chosen: the ATM is the strike nearest the mid
    assert selection.atm == min(chain.strikes, key=lambda k: (abs(k - price), k))
    assert len(selection.window) == 2 * opts.strikes_each_side + 1
    assert [q.contract for q in quotes] == list(selection.candidates)
    assert len(quotes) == opts.strike_count
    assert all(q.bid > 0 and q.ask > q.bid for q in quotes)
    # Then IBKR's model greeks (and with them the underlying's price) come for every strike
    # but the quirk's, and the Black-Scholes fallback the strategy applies, priced from the
    # worker's own reference price, fills those in: every candidate ends with a call's delta
    without = [q for q in quotes if grid[q.contract.strike] % quirk.every_nth_strike == 0]
    assert len(without) == 1 and without[0].contract.strike == selection.atm
    assert math.isnan(without[0].delta) and math.isnan(without[0].gamma)
    assert all(math.isfinite(q.delta) for q in quotes if q not in without)
    assert math.isnan(without[0].und_price)
    filled = [fill_greeks(q, day, spot=price) for q in quotes]
    assert all(0 < q.delta < 1 and q.gamma > 0 for q in filled)
    assert abs(filled[0].delta - 0.5) < 0.2  # the ATM call: about half


def test_regular_hours_come_from_the_contract_hours(sim: ThreadedSim) -> None:
    tomorrow_noon = (today(sim) + timedelta(days=1)).replace(hour=12, minute=0)

    async def body(broker: IBKRBroker) -> Any:
        return await broker.regular_hours("SPY"), await broker.regular_hours("NOSUCH")

    hours, unknown = with_broker(sim, body)
    assert hours is not None and unknown is None
    assert hours.is_open(sim.now()) is True  # always_open scenario
    assert hours.is_open(tomorrow_noon.timestamp()) is False  # make_scenario: a holiday
    assert hours.is_open(sim.now() + 60 * 86_400) is None  # not listed that far ahead
    assert hours.session(tomorrow_noon.date()) is None and hours.lists(tomorrow_noon.date())


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (TUESDAY_MORNING, True),
        (TUESDAY_NIGHT, False),  # before the pre-market: liquid hours are 09:30-16:00
        (SATURDAY_NOON, False),
        (CHRISTMAS, False),  # a holiday the contract hours list as CLOSED
        (AFTER_FALL_BACK, True),  # 09:45 EST, the first session after the clocks fell back
    ],
    ids=["tuesday-morning", "tuesday-night", "saturday-noon", "christmas", "after-fall-back"],
)
def test_regular_hours_at_named_moments_of_a_real_hours_session(
    moment: datetime, is_open: bool
) -> None:
    scenario = make_scenario(moment, session={"mode": "real", "holidays": ["20261225"]})

    async def body(broker: IBKRBroker) -> Any:
        hours = await broker.regular_hours("SPY")
        return hours.is_open(broker.now()) if hours is not None else None

    with ThreadedSim(scenario) as sim:
        assert with_broker(sim, body) is is_open


@pytest.mark.parametrize(
    ("moment", "first_expiry", "not_listed"),
    [
        # minutes before Friday's close the nearest listed expiry is today's; none on Saturday
        (FRIDAY_1555, "20261204", "20261205"),
        (SATURDAY_NOON, "20261207", "20261205"),  # a weekend: Monday's daily comes first
        # the day before Thanksgiving lists itself, then skips the holiday
        (DAY_BEFORE_THANKSGIVING, "20261125", "20261126"),
    ],
    ids=["friday-close", "saturday", "before-thanksgiving"],
)
def test_the_chain_lists_the_sessions_own_expiries(
    moment: datetime, first_expiry: str, not_listed: str
) -> None:
    async def body(broker: IBKRBroker) -> Any:
        return (await broker.chain("SPY")).expirations

    with ThreadedSim(make_scenario(moment)) as sim:
        expirations = with_broker(sim, body)
    assert expirations[0] == first_expiry
    assert not_listed not in expirations and len(expirations) >= 10


# --- orders ---------------------------------------------------------------------------------


def test_what_if_reports_margin_and_commission(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        chain = await broker.chain("SPY")
        (contract,) = spy_options(chain.strikes, chain.expirations[1], 680.0, 1)
        return await broker.what_if(contract, "BUY", 2, 1.25)

    result = with_broker(sim, body)
    assert result.init_margin_change == pytest.approx(1.25 * 2 * 100)
    assert result.maint_margin_change > 0
    assert result.commission == pytest.approx(1.30)


def test_bracket_arrives_field_by_field(sim: ThreadedSim) -> None:
    intent_id = f"bracket-{next_client_id()}"

    async def body(broker: IBKRBroker) -> Any:
        chain = await broker.chain("SPY")
        (contract,) = spy_options(chain.strikes, chain.expirations[2], 680.0, 1)
        intent = OrderIntent(
            intent_id,
            1,
            "SPY",
            contract,
            Signal.BUY,
            entry_limit=2.5,
            take_profit=3.75,
            stop_loss=1.75,
            premium=2.5,
            confidence=0.7,
            reasons=("test",),
        )
        placed = await broker.place_bracket(intent, 2, ACCOUNT)
        await wait_until(lambda: len(broker.open_orders()) >= 2, 3.0)
        return placed, broker.open_orders()

    placed, open_orders = with_broker(sim, body)
    ids = placed.order_ids
    assert all(placed.perm_ids) and len(set(placed.perm_ids)) == 3  # the gateway accepted all
    received = {o["order_id"]: o for o in sim.orders() if o["orderRef"] == intent_id}
    parent, tp, sl = (received[i] for i in ids)
    assert (parent["orderType"], parent["action"], parent["lmtPrice"]) == ("LMT", "BUY", 2.5)
    assert (tp["orderType"], tp["action"], tp["lmtPrice"]) == ("LMT", "SELL", 3.75)
    assert (sl["orderType"], sl["action"], sl["auxPrice"]) == ("STP", "SELL", 1.75)
    assert [parent["transmit"], tp["transmit"], sl["transmit"]] == [False, False, True]
    assert parent["parentId"] == 0 and tp["parentId"] == sl["parentId"] == ids[0]
    assert tp["ocaGroup"] == sl["ocaGroup"] == f"oca-{intent_id}" and tp["ocaGroup"]
    assert parent["ocaGroup"] == ""
    assert all(
        o["totalQuantity"] == 2 and o["account"] == ACCOUNT and not o["whatIf"]
        for o in (parent, tp, sl)
    )
    assert all(o["sec_type"] == "OPT" and o["strike"] == 680.0 for o in (parent, tp, sl))
    assert {o.order_ref for o in open_orders} == {intent_id}


# --- error paths ----------------------------------------------------------------------------


def test_symbol_errors_become_symbol_data_errors(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        messages = {}
        for symbol in ("ZZZZ", "SYM03", "SYM04", "SYM10"):
            with pytest.raises(SymbolDataError) as info:
                await broker.quote(symbol)
            messages[symbol] = str(info.value)
        requests = sim.stats()["messages_by_type"].get("9", 0)
        with pytest.raises(SymbolDataError, match="200"):
            await broker.bars("ZZZZ", 60)  # the unknown symbol is remembered for the day
        assert sim.stats()["messages_by_type"].get("9", 0) == requests
        await assert_nothing_left(broker)
        return messages, broker.stats()

    messages, stats = with_broker(sim, body)
    assert "error 200" in messages["ZZZZ"]
    assert "error 354" in messages["SYM03"]
    assert "error 10197" in messages["SYM04"]
    assert "error 10168" in messages["SYM10"]
    for symbol in ("SYM03", "SYM10"):  # the setting that would get data is named
        assert "set `ibkr.market_data_type: delayed`" in messages[symbol]
    assert "market_data_type" not in messages["ZZZZ"]
    assert stats["errors.200"] == 1 and stats["errors.354"] == 1


def test_unknown_symbols_are_asked_for_at_once_and_remembered(sim: ThreadedSim) -> None:
    def details_sent() -> int:
        return int(sim.stats()["messages_by_type"].get("9", 0))  # reqContractDetails

    async def body(broker: IBKRBroker) -> Any:
        before = details_sent()
        # When the universe is checked, two symbols IBKR does not list among known ones
        unknown = await broker.unknown_symbols(["SPY", "ZZZZ", "QQQ", "YYYY"])
        assert details_sent() == before + 4  # one request a symbol
        # Then checking again, or asking for their data, sends nothing more
        assert await broker.unknown_symbols(["SPY", "ZZZZ", "QQQ", "YYYY"]) == unknown
        with pytest.raises(SymbolDataError, match="ZZZZ: error 200"):
            await broker.quote("ZZZZ")
        assert details_sent() == before + 4
        await assert_nothing_left(broker)
        return unknown

    unknown = with_broker(sim, body)
    assert list(unknown) == ["ZZZZ", "YYYY"]
    assert all(why.startswith(f"{s}: error 200: ") for s, why in unknown.items())


def test_a_pacing_refusal_is_not_resent_while_it_cools_down() -> None:
    # Given a gateway enforcing historical pacing, one request per 10 minutes
    rules = {"historical_pacing": True, "hist_max_requests": 1}
    with ThreadedSim(make_scenario(TUESDAY_MORNING, rules=rules)) as paced:

        def sent() -> int:
            return int(paced.stats()["messages_by_type"].get("20", 0))  # reqHistoricalData

        async def body(broker: IBKRBroker) -> Any:
            await broker.bars("SPY", 60)  # the one request allowed
            # When the next bar size is refused with 162
            with pytest.raises(
                SymbolDataError, match=r"error 162: .*pacing.*; not asked again for 60s"
            ):
                await broker.bars("SPY", 600, 60)
            refused_at = sent()
            # Then asking again fails at once, naming the cooldown, and nothing is sent
            with pytest.raises(
                SymbolDataError,
                match=r"bars SPY 1 hour: not sent, cooling "
                r"down \d+s more after IBKR's pacing refusal",
            ):
                await broker.bars("SPY", 600, 60)
            assert sent() == refused_at == 2
            await broker.bars("SPY", 60)  # the other bar size is not held up
            await assert_nothing_left(broker)
            return broker.stats()

        stats = with_broker(paced, body)
    assert stats["errors.162"] == 1 and stats["bars_pacing_cooldowns_total"] == 1


def test_a_complete_quote_does_not_wait_for_the_snapshot_end(sim: ThreadedSim) -> None:
    # Given a snapshot whose data comes at once but whose end never does (IBKR: ~11 s), and
    # one market-data line: none to spare
    async def body(broker: IBKRBroker) -> Any:
        quote = await broker.quote("SYM11")
        # Then the snapshot is cancelled, and its line is given back at both ends
        await wait_until(lambda: broker.stats()["lines_in_use"] == 0)
        await wait_until(lambda: sim.stats()["market_data_lines_open"] == 0)
        await assert_nothing_left(broker)
        return quote, broker.stats()

    quote, stats = with_broker(sim, body, pacing={"max_market_data_lines": 1})
    # When the quote has bid, ask, last and close it is complete, not timed out (1 s), and
    # its line came back by a cancel, not by waiting for an end that never comes
    assert all(math.isfinite(v) for v in (quote.bid, quote.ask, quote.last, quote.close))
    assert stats["snapshots_complete_total"] == 1 and stats["snapshot_cancels_total"] == 1
    assert stats.get("snapshot_timeouts_total", 0) == 0
    assert stats.get("snapshots_left_to_end_total", 0) == 0
    assert stats.get("errors.300", 0) == 0  # the cancel named a ticker the gateway still had


def test_a_cancel_queued_across_a_reconnect_is_not_sent_on_the_new_connection(
    sim: ThreadedSim,
) -> None:
    # Given one line, so a complete snapshot's cancel is queued at once
    async def body(broker: IBKRBroker) -> Any:
        def cancels() -> int:
            return int(sim.stats()["messages_by_type"].get("2", 0))

        before = cancels()
        await broker.quote("SYM11")
        # When the link has come back as a new connection before the cancel went out
        broker._link.generation += 1
        await wait_until(lambda: broker.stats()["lines_in_use"] == 0)
        await asyncio.sleep(0.1)
        return cancels() - before, broker.stats()

    sent, stats = with_broker(sim, body, pacing={"max_market_data_lines": 1})
    # Then no cancel names a reqId the new connection may have reused; the line is ours again
    assert sent == 0 and stats.get("snapshot_cancels_total", 0) == 0


def test_while_lines_are_plentiful_a_complete_snapshot_ends_by_itself(sim: ThreadedSim) -> None:
    # Given the default 90 lines and SPY, whose snapshot ends soon after its data
    async def body(broker: IBKRBroker) -> Any:
        quote = await broker.quote("SPY")
        await assert_nothing_left(broker)
        await wait_until(lambda: sim.stats()["market_data_lines_open"] == 0)
        return quote, broker.stats()

    quote, stats = with_broker(sim, body)
    # Then no cancel was spent on it: the line came back with its end
    assert math.isfinite(quote.bid)
    assert stats["snapshots_left_to_end_total"] == 1
    assert stats.get("snapshot_cancels_total", 0) == 0


def test_a_complete_snapshot_is_cancelled_when_the_line_reserve_is_not_free(
    sim: ThreadedSim,
) -> None:
    # Given SPY again, but a reserve of every line (pacing.line_reserve 90 of 90): with its
    # own line held, 89 are free, one short of the reserve
    async def body(broker: IBKRBroker) -> Any:
        quote = await broker.quote("SPY")
        await assert_nothing_left(broker)
        await wait_until(lambda: sim.stats()["market_data_lines_open"] == 0)
        return quote, broker.stats()

    quote, stats = with_broker(sim, body, pacing={"line_reserve": 90})
    # Then it was cancelled at once rather than left to end
    assert math.isfinite(quote.bid)
    assert stats["snapshot_cancels_total"] == 1
    assert stats.get("snapshots_left_to_end_total", 0) == 0


def test_delayed_fallback_takes_delayed_data_where_live_is_not_subscribed() -> None:
    # Given AAPL without a live subscription (354 on live data, delayed data on type 3)
    raw = yaml.safe_load(DEFAULT_SCENARIO.read_text())["symbols"]
    symbols = [{**spec, "live_data": spec["symbol"] != "AAPL"} for spec in raw]
    with ThreadedSim(make_scenario(TUESDAY_MORNING, symbols=symbols)) as gateway:

        def data_type_requests() -> int:
            return int(gateway.stats()["messages_by_type"].get("59", 0))

        async def body(broker: IBKRBroker) -> Any:
            aapl = await broker.quote("AAPL")  # When it is asked for, fallback allowed
            spy = await broker.quote("SPY")
            await assert_nothing_left(broker)
            return data_type_requests(), aapl, spy

        # (this gateway's own counts: the one at the connect, read once both were answered)
        after, aapl, spy = with_broker(gateway, body, ibkr={"delayed_fallback": True})
        # Then the connection switched to delayed data once (after the connect's own request)
        # and AAPL was asked again
        assert after == 2
        assert math.isfinite(aapl.bid)
        # its quote carries its true age; SPY, subscribed, is still live
        now = gateway.now()
        assert aapl.ts == pytest.approx(now - 900, abs=5)
        assert spy.ts == pytest.approx(now, abs=5)

        # and without the fallback, AAPL fails naming both ways out
        async def refused(broker: IBKRBroker) -> str:
            with pytest.raises(SymbolDataError) as info:
                await broker.quote("AAPL")
            return str(info.value)

        text = with_broker(gateway, refused)
    assert "354" in text and "ibkr.market_data_type: delayed" in text
    assert "ibkr.delayed_fallback: true" in text


def test_in_stream_mode_a_quote_is_a_stream_cancelled_once_complete(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        streams_before = sim.stats()["streams"]
        quote = await broker.quote("SPY")
        (option,) = await broker.option_quotes(
            spy_options(
                (await broker.chain("SPY")).strikes,
                (await broker.chain("SPY")).expirations[0],
                quote.last,
                1,
            )
        )
        await assert_nothing_left(broker)
        await wait_until(lambda: sim.stats()["market_data_lines_open"] == 0)
        return quote, option, sim.stats()["streams"] - streams_before, broker.stats()

    quote, option, streams, stats = with_broker(sim, body, ibkr={"quote_mode": "stream"})
    # Then both were streams, each cancelled as soon as its fields were in
    assert streams == 2 and stats["snapshot_cancels_total"] == 2
    assert math.isfinite(quote.bid) and math.isfinite(option.delta)
    assert stats.get("snapshots_left_to_end_total", 0) == 0


def test_a_snapshot_left_to_end_that_never_ends_is_cancelled_after_the_timeout(
    sim: ThreadedSim,
) -> None:
    # Given a complete quote whose end never comes, with lines to spare
    async def body(broker: IBKRBroker) -> Any:
        await broker.quote("SYM11")
        held = broker.stats()["lines_in_use"]
        await assert_nothing_left(broker)  # waits for the line (timeout 1 s + grace 2 s)
        await wait_until(lambda: sim.stats()["market_data_lines_open"] == 0)
        return held, broker.stats()

    held, stats = with_broker(sim, body)
    # Then it held its line while waiting, and a cancel gave the line back in the end
    assert held == 1
    assert stats["snapshot_cancels_total"] == 1
    assert stats.get("snapshots_left_to_end_total", 0) == 0


def test_a_quote_missing_fields_is_what_the_gateway_sent_when_the_end_comes(
    sim: ThreadedSim,
) -> None:
    # Given SYM06, whose bid, ask and last never come (the default scenario's quirk)
    async def body(broker: IBKRBroker) -> Any:
        quote = await broker.quote("SYM06")
        await assert_nothing_left(broker)
        return quote, broker.stats()

    quote, stats = with_broker(sim, body)
    # Then at the snapshot's end the quote is what came: the checks downstream judge it
    assert math.isnan(quote.bid) and math.isnan(quote.last) and math.isfinite(quote.close)
    assert stats["snapshots_partial_total"] == 1
    assert stats.get("snapshot_cancels_total", 0) == 0  # it ended by itself


def test_a_snapshot_with_no_data_before_the_timeout_fails_naming_what_is_missing() -> None:
    # Given a gateway whose data comes after the broker's 1 s timeout
    slow = make_scenario(TUESDAY_MORNING, latency={"market_data_s": 3.0})
    with ThreadedSim(slow) as gateway:

        async def body(broker: IBKRBroker) -> Any:
            with pytest.raises(
                SymbolDataError,
                match=r"quote SPY: no data within 1s \(missing bid, ask, last, "
                r"close\); cancelled",
            ):
                await broker.quote("SPY")
            await assert_nothing_left(broker)
            await wait_until(lambda: gateway.stats()["market_data_lines_open"] == 0)
            return broker.stats()

        stats = with_broker(gateway, body)
    assert stats["snapshot_timeouts_total"] == 1 and stats["snapshot_cancels_total"] == 1


def test_historical_timeout(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        started = time.monotonic()
        with pytest.raises(SymbolDataError, match="no answer within 1s"):
            await broker.bars("SYM12", 60)
        elapsed = time.monotonic() - started
        await assert_nothing_left(broker)
        return elapsed

    assert with_broker(sim, body) >= 1.0  # waited out the timeout, then gave up


# --- signals on regular-session bars --------------------------------------------------------


def test_the_whale_rule_fires_on_a_monday_morning_against_real_hours() -> None:
    # Given the real-hours scenario at Monday 11:01 after a weekend, where QQQ broke out at
    # 10:05 on heavy volume (a scenario event), and the whale rule's 22 hourly bars must come
    # from four trading days of regular sessions (Monday has only one complete bar yet)
    raw = yaml.safe_load((REPO_ROOT / "configs" / "scenarios" / "real_hours.yaml").read_text())
    raw["clock"] = {"start": MONDAY_0931.replace(hour=11, minute=1).isoformat()}
    settings_ = parse_settings({}, "test", environ={})

    async def body(broker: IBKRBroker) -> Any:
        now = broker.now()
        session = await SessionBook(broker, nyse()).today("QQQ", now)
        assert session is not None
        task = SymbolTask(
            1,
            "QQQ",
            now,
            trading_day(now),
            session_open_ts=session.open_ts,
            session_close_ts=session.close_ts,
        )
        service = DataService(broker, 10.0, nyse(), broker.now)
        pipeline = process_symbol(task, 1, settings_, ScalpWhaleStrategy(settings_), request_ids())
        return await drive(pipeline, service, [])

    with ThreadedSim(scenario_from_dict(raw)) as sim:
        # IBKR's own historical timeout (the module's 1 s is for the timeout tests): four
        # days of hourly bars cost the simulator CPU, over 1 s beside a busy machine's load
        result = with_broker(sim, body, timeout_s=60, ibkr={"historical_timeout_s": 12.0})
    # Then the whale fired: BUY calls on the break of the 20-hour high
    assert result.whale_fired_ts is not None and result.signal is Signal.BUY
    assert any(r.startswith("whale: close") and "> 20h high" in r for r in result.reasons)
    assert not any("not enough hourly bars" in r for r in result.reasons)


def test_a_partly_filled_take_profit_shrinks_the_stop_by_as_much() -> None:
    # Given a gateway that fills at most 2 contracts per pass, and our bracket of 5 whose
    # entry and take-profit are both marketable (the stop far below, never triggered)
    scenario = make_scenario(
        TUESDAY_MORNING, orders={"max_fill_per_match": 2, "match_interval_s": 0.05}
    )
    intent_id = f"oca-{next_client_id()}"

    async def body(broker: IBKRBroker) -> Any:
        chain = await broker.chain("SPY")
        spot = (await broker.quote("SPY")).last
        (contract,) = spy_options(chain.strikes, chain.expirations[1], spot, 1)
        (q,) = await broker.option_quotes((contract,))
        intent = OrderIntent(
            intent_id,
            1,
            "SPY",
            contract,
            Signal.BUY,
            entry_limit=round(q.ask + 0.5, 2),
            take_profit=round(q.bid * 0.5, 2),
            stop_loss=0.05,
            premium=q.ask,
            confidence=0.5,
            reasons=(),
        )
        seen: list[tuple[float, float]] = []  # (take-profit filled, stop quantity)

        def sold() -> float:
            return sum(
                f.shares for f in broker.fills() if f.order_ref == intent_id and f.side == "SLD"
            )

        def stop_sent(trade: Any) -> None:
            """At each of the stop's openOrder messages, what the broker shows: the fills
            whose messages came before it, and the stop's size (a poll between an execution
            and the resize that follows it would see the one without the other)."""
            if trade.order.orderRef == intent_id and trade.order.orderType == "STP":
                seen.extend(
                    (sold(), o.quantity)
                    for o in broker.open_orders()
                    if o.order_id == trade.order.orderId
                )

        broker.ib.openOrderEvent += stop_sent
        _entry, tp_id, sl_id = (await broker.place_bracket(intent, 5, ACCOUNT)).order_ids
        await wait_until(lambda: sold() >= 5, 10)
        await wait_until(lambda: not any(o.order_id == sl_id for o in broker.open_orders()))
        broker.ib.openOrderEvent -= stop_sent
        return seen, broker.fills(), tp_id

    with ThreadedSim(scenario) as sim:
        seen, fills, _tp_id = with_broker(sim, body, timeout_s=40)
    ours = [f for f in fills if f.order_ref == intent_id]
    assert sum(f.shares for f in ours if f.side == "BOT") == 5
    assert sum(f.shares for f in ours if f.side == "SLD") == 5
    assert len([f for f in ours if f.side == "SLD"]) >= 2  # the take-profit filled in parts
    # Then every size the gateway gave the stop covered exactly what was still held (OCA
    # type 2: reduce), from the whole 5 at placement through the partial fills
    assert seen[0] == (0, 5)
    assert all(stop == 5 - filled for filled, stop in seen)
    assert any(0 < filled < 5 for filled, _stop in seen)
