"""Pure pieces of the IBKR broker: trading-hours parsing, durations, error classes, the time
a fill is stamped with; and SimProcess, which runs the simulated gateway as a child process
for ``run --sim``."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from common.calendar import trading_day
from common.config import IBKRSettings
from common.messages import OptionContract, OrderIntent, Right, Signal
from common.settings_file import parse_settings
from supervisor.broker.base import EntriesStopped
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.bars import PacingCooldown
from supervisor.broker.ibkr.broker import IBKRBroker, ib_duration
from supervisor.broker.ibkr.client import ibi
from supervisor.broker.ibkr.marketdata import missing, option_fields
from supervisor.broker.ibkr.orders import Orders
from supervisor.broker.ibkr.requests import IBKRRequestError, request_error
from supervisor.runtime.clock import PinnedClock
from supervisor.runtime.simproc import SimProcess, SimStartError
from tests.conftest import REPO_ROOT
from tests.conftest_sim import run_client
from tests.sessions import TUESDAY_MORNING
from tests.test_gateway_sim_orders import NEXT_WEEK, make_desk
from tests.test_ibkr_broker import settings
from tools.gateway_sim.codec import format_field
from tools.gateway_sim.outgoing import exec_details


def test_durations_in_seconds_up_to_a_day_then_days() -> None:
    assert ib_duration(7260) == "7260 S"
    assert ib_duration(0.5) == "60 S"  # never below a minute
    assert ib_duration(86_400) == "86400 S"
    assert ib_duration(86_401) == "2 D"


@pytest.mark.parametrize(
    ("code", "kind", "key"),
    [
        (2104, errors.Kind.NOTICE, "warnings.2104"),
        (10167, errors.Kind.WARNING, "warnings.10167"),
        (354, errors.Kind.SYMBOL, "errors.354"),
        (200, errors.Kind.SYMBOL, "errors.200"),
        (162, errors.Kind.SYMBOL, "errors.162"),
        (1100, errors.Kind.CONNECTION, "errors.1100"),
        (326, errors.Kind.CONNECTION, "errors.326"),
        (201, errors.Kind.ORDER, "errors.201"),
        (9999, errors.Kind.OTHER, "errors.9999"),
    ],
)
def test_error_codes_are_sorted_into_kinds(code: int, kind: errors.Kind, key: str) -> None:
    assert errors.classify(code) is kind and errors.stats_key(code) == key


def test_error_log_levels() -> None:
    assert errors.log_level(2104, ours=False) == logging.DEBUG
    assert errors.log_level(354, ours=True) == logging.DEBUG  # the caller gets the exception
    assert errors.log_level(354, ours=False) == logging.WARNING
    assert errors.log_level(100, ours=False) == logging.ERROR
    text = errors.describe(200, "  No security\n definition ")
    assert text == "error 200: No security definition"


@pytest.mark.parametrize("code", [354, 10168])
def test_a_missing_subscription_names_the_setting_to_change(code: int) -> None:
    # Given the gateway refusing a snapshot for want of a market-data subscription
    exc = ibi.RequestError(7, code, "Requested market data is not subscribed.")
    # Then the error says which setting to change, after the gateway's own words
    error = request_error("quote SPY", exc)
    assert error.code == code
    assert str(error).startswith(f"quote SPY: error {code}: Requested market data is not")
    assert "set `ibkr.market_data_type: delayed`" in str(error)


def test_errors_no_setting_would_fix_carry_no_hint() -> None:
    error = request_error("quote ZZZZ", ibi.RequestError(7, 200, "No security definition"))
    assert str(error) == "quote ZZZZ: error 200: No security definition"


def test_a_pacing_refusal_cools_down_doubling_to_ten_minutes_until_a_success() -> None:
    # Given a bars request IBKR refused for pacing, on a clock the test moves
    now = [100.0]
    cooldown = PacingCooldown(mono=lambda: now[0])
    key = ("SPY", 3600, True)
    refusal = IBKRRequestError("bars SPY 1 hour: error 162: pacing violation", 162)
    rests = []
    for _ in range(6):
        error = cooldown.refused(key, refusal)
        assert error.code == 162 and str(error).startswith(str(refusal))
        rest = float(str(error).rsplit("for ", 1)[1].rstrip("s"))
        rests.append(rest)
        # Then while it cools down it fails at once, saying why and for how long
        now[0] += rest - 1
        with pytest.raises(
            IBKRRequestError,
            match=r"bars SPY 1 hour: not sent, cooling "
            r"down 1s more after IBKR's pacing refusal \(bars SPY",
        ):
            cooldown.check(key, "bars SPY 1 hour")
        cooldown.check(("SPY", 60, True), "bars SPY 1 min")  # another bar size is asked
        now[0] += 1
        cooldown.check(key, "bars SPY 1 hour")  # over: the request may go out again
    # And each refusal in a row doubles the wait, up to IBKR's 10-minute window
    assert rests == [60, 120, 240, 480, 600, 600]
    # When one goes through, the next refusal starts from a minute again
    cooldown.passed(key)
    assert str(cooldown.refused(key, refusal)).endswith("not asked again for 60s")


def test_a_fresh_broker_is_disconnected_and_reports_stats() -> None:
    async def main() -> Any:
        broker = IBKRBroker(settings(1))
        stats = broker.stats()
        assert broker.ib.client.MaxRequests == 0  # one governor: ib_insync's throttle is off
        with pytest.raises(Exception, match="not connected"):
            await broker.quote("SPY")
        assert await broker.regular_hours("SPY") is None  # not connected: no hours known
        await broker.disconnect()
        return stats

    stats = run_client(main)
    assert stats["connected"] == 0 and stats["live_tickers"] == 0
    assert all(
        k.endswith("_total")
        or k
        in {
            "connected",
            "live_tickers",
            "pending_requests",
            "lines_in_use",
            "background_tasks",
            "circuit_state",
            "bars_cached",
            "options_cached",
            "recv_buffer_bytes",
            "wrapper_results",
        }
        for k in stats
    )


# --- SimProcess -----------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_sim_process_serves_a_broker_and_stops_cleanly(tmp_path: Path) -> None:
    scenario = REPO_ROOT / "configs" / "scenarios" / "default.yaml"
    stats_path = tmp_path / "sim-stats.json"
    with SimProcess(scenario, stats_path) as sim:
        assert sim.running() and sim.port > 0
        clock = sim.clock()  # the child's session clock, followed from its clock file

        async def main() -> Any:
            broker = IBKRBroker(settings(sim.port), now=clock.now)
            await broker.connect()
            try:
                gateway_now = (await broker.ib.reqCurrentTimeAsync()).timestamp()
                return gateway_now, clock.now(), await broker.quote("SPY")
            finally:
                await broker.disconnect()

        gateway_now, bot_now, quote = run_client(main)
        assert math.isfinite(quote.last)
    # the default scenario is pinned: both sides are in its session, not at the wall's "now"
    assert isinstance(clock, PinnedClock) and clock.start_ts == TUESDAY_MORNING.timestamp()
    assert 0 <= bot_now - TUESDAY_MORNING.timestamp() < 60
    assert abs(gateway_now - bot_now) < 2  # reqCurrentTime has whole seconds
    assert abs(quote.ts - bot_now) < 5
    assert sim.proc is not None and sim.proc.returncode == 0  # SIGTERM: stats, exit 0
    stats = sim.stats()
    assert stats["connections_total"] >= 1 and stats["snapshots"] >= 1
    assert stats["violations_total"] == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_sim_process_async_start_and_a_bad_scenario(tmp_path: Path) -> None:
    async def main() -> Any:
        async with SimProcess(
            REPO_ROOT / "configs" / "scenarios" / "default.yaml", tmp_path / "stats.json"
        ) as sim:
            port = sim.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
        return port, sim.running()

    port, running = asyncio.run(main())
    assert port > 0 and not running
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nno_such_key: 1\n")
    started = time.monotonic()
    with pytest.raises(SimStartError, match="exited with code 2"):
        SimProcess(bad, tmp_path / "bad-stats.json").start()
    assert time.monotonic() - started < 15


def test_a_strike_listed_twice_in_one_expiry_is_not_guessed() -> None:
    # Given IBKR's answer for an expiry and right: 5000 listed once, 5100 under two trading
    # classes (SPX and SPXW on a monthly expiry)
    from collections import Counter

    from common.messages import OptionContract, Right
    from supervisor.broker.ibkr.contracts import Contracts

    def listed(strike: float, trading_class: str) -> Any:
        return SimpleNamespace(
            contract=ibi.Option(
                "SPX", "20261218", strike, "C", "SMART", "100", "USD", tradingClass=trading_class
            )
        )

    asked: list[Any] = []

    class Requests:
        def lock_for(self, _key: Any) -> asyncio.Lock:
            return asyncio.Lock()

        async def request(self, _what: str, send: Any, _timeout: float, **_kw: Any) -> Any:
            asked.append(1)
            return [listed(5000, "SPX"), listed(5100, "SPX"), listed(5100, "SPXW")]

    link = SimpleNamespace(counts=Counter(), ib=SimpleNamespace(client=None))
    contracts = Contracts(
        link,  # type: ignore[arg-type]
        Requests(),  # type: ignore[arg-type]
        IBKRSettings(),
        tz="America/New_York",
        now=lambda: TUESDAY_MORNING.timestamp(),
    )
    # an exit's contract: no trading class, so every class of the expiry comes back
    wanted = OptionContract("SPX", "20261218", 5100.0, Right.CALL)

    async def both() -> tuple[Any, Any]:
        return (
            await contracts.option(wanted),
            await contracts.option(OptionContract("SPX", "20261218", 5000.0, Right.CALL)),
        )

    ambiguous, single = asyncio.run(both())
    # Then the ambiguous strike is not traded (never the other class's contract), the single
    # one is, and one request answered both
    assert ambiguous is None
    assert single is not None and single.strike == 5000 and single.exchange == "SMART"
    assert len(asked) == 1


# --- fills on the session clock -------------------------------------------------------------


def _orders_over(ib: Any, now: float) -> Orders:
    """The order layer over a bare client: fills() reads only the library's state."""
    return Orders(
        SimpleNamespace(ib=ib),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        IBKRSettings(),
        now=lambda: now,
    )


def test_a_live_fill_is_stamped_with_its_execution_time_not_its_receipt() -> None:
    # Given the simulator executing a BUY on Tuesday 2026-12-01 at 10:31:01 (its session
    # clock), and the client library receiving that execution on another day of the
    # machine's wall clock (a pinned session run a week later)
    desk = make_desk(TUESDAY_MORNING)
    call = desk.option(NEXT_WEEK, 680.0)
    desk.place(1, call, "BUY", 5, desk.marketable(call, "BUY", 61))
    desk.passes(1, start_s=61)
    sent = [f for _c, f in desk.sent if f[0] in (11, 59)]  # the execution, its commission
    assert [f[0] for f in sent] == [11, 59]
    ib = ibi.IB()
    received = (TUESDAY_MORNING + timedelta(days=6, hours=1)).astimezone(UTC)
    ib.wrapper.lastTime = received  # what tcpDataArrived() sets: the wall clock at receipt
    # When the library decodes the very messages the simulator wrote (a live execution:
    # reqId -1, no reqExecutions pending)
    for fields in sent:
        ib.client.decoder.interpret([format_field(v) for v in fields])
    (raw,) = ib.fills()
    assert raw.time == received  # the library's own stamp of a live fill: its receipt
    (fill,) = _orders_over(ib, TUESDAY_MORNING.timestamp() + 3600).fills()
    # Then the fill carries the execution's own time, on the session's day
    assert fill.ts == TUESDAY_MORNING.timestamp() + 61
    assert trading_day(fill.ts) == date(2026, 12, 1)
    assert fill.side == "BOT" and fill.shares == 5 and fill.commission == pytest.approx(3.25)


@pytest.mark.parametrize(
    ("text", "tws_zone"),
    [
        ("20261201 10:31:01 US/Eastern", ""),  # the time with its zone named (as the sim sends)
        ("20261201  10:31:01", "US/Eastern"),  # a zoneless time, in the TWS zone
    ],
)
def test_an_execution_time_reads_as_the_instant_ibkr_meant(text: str, tws_zone: str) -> None:
    desk = make_desk(TUESDAY_MORNING)
    ib = ibi.IB()
    ib.TimezoneTWS = tws_zone
    fields = exec_details(
        -1,
        7,
        desk.option(NEXT_WEEK, 680.0),
        "0001.01",
        text,
        "DU1",
        "BUY",
        1.0,
        2.5,
        99,
        1,
        "ref",
        1.0,
        2.5,
    )
    ib.client.decoder.interpret([format_field(v) for v in fields])
    (fill,) = _orders_over(ib, 0.0).fills()
    assert fill.ts == TUESDAY_MORNING.timestamp() + 61


def test_an_execution_without_a_time_is_stamped_on_the_broker_session_clock() -> None:
    # Given an execution the library holds with no time of its own (its default, the epoch)
    # and received on another day
    contract = ibi.Option("SPY", "20261211", 680.0, "C", "SMART")
    execution = ibi.Execution(
        execId="0001.01", orderId=7, side="BOT", shares=1.0, price=2.5, permId=99, orderRef="ref"
    )
    received = datetime(2027, 1, 1, tzinfo=UTC)
    ib = SimpleNamespace(
        fills=lambda: [ibi.Fill(contract, execution, ibi.CommissionReport(), received)]
    )
    # Then it is stamped now on the session clock the broker was given, not at its receipt
    (fill,) = _orders_over(ib, TUESDAY_MORNING.timestamp()).fills()
    assert fill.ts == TUESDAY_MORNING.timestamp() and fill.commission is None


# --- when an option quote is complete ---------------------------------------------------------


def test_an_option_quote_waits_for_its_volume_only_when_the_intent_step_reads_it() -> None:
    # Given an option snapshot whose bid, ask and greeks are in, its volume tick not yet
    ticker = ibi.Ticker()  # (ib_async's takes no field values at construction)
    ticker.bid, ticker.ask, ticker.modelGreeks = 1.00, 1.10, object()
    reads_volume = IBKRBroker(
        parse_settings({"ibkr": {"port": 1}, "options": {"min_volume": 10}}, "test", environ={})
    )
    needs = reads_volume._market._option_needs
    # Then without options.min_volume it is complete; with it, the volume is still to come
    assert missing(ticker, option_fields(0)) == []
    assert missing(ticker, needs) == ["volume"]

    async def wait() -> tuple[bool, bool]:
        future = asyncio.get_running_loop().create_future()
        waiting = asyncio.create_task(reads_volume._market._until_complete(future, ticker, needs))
        await asyncio.sleep(0)
        still_waiting = not waiting.done()
        # When the volume tick arrives in a later read
        ticker.volume = 25.0
        ticker.updateEvent.emit(ticker)
        return still_waiting, await asyncio.wait_for(waiting, 5)

    # Then the quote waited for it, and is complete (not ended) once it is in
    assert asyncio.run(wait()) == (True, False)


# --- a stop: no bracket leaves after it ------------------------------------------------------


def test_a_bracket_waiting_for_its_pacing_slot_is_not_sent_after_a_stop() -> None:
    # Given a bracket that waits for its pacing slot (the governor is full), and a stop
    # asked for meanwhile
    slot = asyncio.Event()
    placed: list[Any] = []

    async def pace(n: int) -> None:
        await slot.wait()

    link = SimpleNamespace(
        pace=pace,
        new_req_id=iter(range(1, 100)).__next__,
        accounts=["DU1"],
        ib=SimpleNamespace(placeOrder=lambda c, o: placed.append(o)),
    )

    async def tradable(contract: Any) -> Any:
        return contract

    orders = Orders(
        link,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        SimpleNamespace(tradable=tradable),  # type: ignore[arg-type]
        IBKRSettings(account="DU1"),
        now=time.time,
    )
    contract = OptionContract("SPY", "20261204", 680.0, Right.CALL)
    intent = OrderIntent("SPY-1", 1, "SPY", contract, Signal.BUY, 2.0, 3.0, 1.4, 2.0, 0.5, ())

    async def scenario() -> None:
        sending = asyncio.ensure_future(orders.place_bracket(intent, 3, "DU1"))
        await asyncio.sleep(0)  # it waits for its slot now
        orders.entries_stopped = True  # what IBKRBroker.stop_entries sets, from the signal
        slot.set()
        with pytest.raises(EntriesStopped, match="not sent"):
            await sending

    asyncio.run(scenario())
    # Then no message of it reached the socket
    assert placed == []
