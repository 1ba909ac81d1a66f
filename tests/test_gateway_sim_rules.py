"""The gateway's rules, enforced by the simulator and counted in its stats.

100 (message rate, then disconnect), 101 (market-data lines), 322 (reused ticker id),
103 (reused order id), 326 (client id in use), 162 (historical pacing), 414 (generic ticks
with a snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import threading
import time
from typing import Any

import pytest

from tests.conftest_sim import ErrorLog, connect, make_scenario, next_client_id, run_client
from tests.ibclient import IB, LimitOrder, Stock
from tests.sessions import TUESDAY_MORNING
from tools.gateway_sim import ThreadedSim, arrivals
from tools.gateway_sim.rules import ApiPacer
from tools.gateway_sim.server import SimServer
from tools.gateway_sim.session import Session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_over_50_messages_in_a_second_gets_100_and_a_drop() -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> tuple[tuple[int, int, str], bool]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            ib.client.MaxRequests = 0  # switch off ib_insync's own 45/s throttle
            for _ in range(60):
                ib.client.reqCurrentTime()
            err = await errors.wait_code(100)
            await asyncio.sleep(0.3)
            connected = ib.isConnected()
            ib.disconnect()
            return err, connected

        (req_id, _code, message), still_connected = run_client(scenario)
        stats = sim.stats()
    assert req_id == -1 and message == "Max rate of messages per second has been exceeded."
    assert not still_connected
    assert stats["violations"] == {"100": 1}
    assert stats["peak_messages_per_s"] > 50
    assert stats["messages_by_type"]["49"] >= 51


def test_rate_violation_without_drop_keeps_the_connection() -> None:
    scenario_ = make_scenario(TUESDAY_MORNING, rules={"drop_on_rate_violation": False})
    with ThreadedSim(scenario_) as sim:

        async def scenario() -> bool:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            ib.client.MaxRequests = 0
            for _ in range(55):
                ib.client.reqCurrentTime()
            await errors.wait_code(100)
            await asyncio.sleep(0.2)
            alive = ib.isConnected() and bool(await ib.reqCurrentTimeAsync())
            ib.disconnect()
            return alive

        assert run_client(scenario)
        assert sim.stats()["violations"] == {"100": 1}


def test_a_client_that_asks_for_paceapi_is_paced_not_dropped() -> None:
    # Given a client that connected with +PACEAPI, as the bot's link does
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> tuple[list[float], list[int], bool]:
            ib = IB()
            ib.client.setConnectOptions("+PACEAPI")
            await ib.connectAsync("127.0.0.1", sim.port, clientId=next_client_id(), timeout=5)
            errors = ErrorLog(ib)
            ib.client.MaxRequests = 0  # no throttle of the client's own
            loop = asyncio.get_running_loop()
            answered: list[float] = []
            all_in = asyncio.Event()

            def on_time(_when: int) -> None:
                answered.append(loop.time())
                if len(answered) == 60:
                    all_in.set()

            ib.wrapper.currentTime = on_time
            # When it sends 60 messages back to back (8 more went out at connect)
            sent = loop.time()
            for _ in range(60):
                ib.client.reqCurrentTime()
            await asyncio.wait_for(all_in.wait(), 10)
            await asyncio.sleep(0.2)
            alive = ib.isConnected()
            ib.disconnect()
            return [t - sent for t in answered], errors.codes(), alive

        delays, codes, alive = run_client(scenario)
        stats = sim.stats()
    # Then every one is answered, none refused, and the connection stays up
    assert len(delays) == 60 and 100 not in codes and alive
    assert stats["violations_total"] == 0
    # but the gateway held back what was over 50 in its window, until the window had room
    assert stats["messages_paced"] >= 10 and stats["paced_delay_max_s"] > 0.5
    assert delays[-1] > 0.5 and delays[0] < 0.5
    assert stats["peak_messages_per_s"] > 50  # what the client sent, counted as it came


@pytest.mark.parametrize("clock_s", [1_000.0, 40_000.0, 140_000.0])
def test_the_pacer_admits_late_whatever_the_clocks_magnitude(clock_s: float) -> None:
    # Given the gateway's window of 0.95 s (1 s less its tolerance) and a monotonic clock at
    # a host's uptime (at 40,000 s, t - (t - 0.95) rounds under 0.95)
    pacer = ApiPacer(50, 1.0 - 0.05)
    arrived = [clock_s + i * 1e-4 for i in range(60)]
    # When 60 messages arrive at once, then every one is given a time, in order
    when = [pacer.admit(t) for t in arrived]
    assert when[:50] == arrived[:50]
    # the 51st and later when the oldest has left the window
    assert when[50:] == [t + (1.0 - 0.05) for t in arrived[:10]]


def test_ib_insync_throttle_stays_under_the_limit() -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> None:
            ib = await connect(sim.port)
            for _ in range(60):  # throttled by ib_insync to 45 per second
                ib.client.reqCurrentTime()
            await asyncio.sleep(1.2)
            ib.disconnect()

        run_client(scenario)
        stats = sim.stats()
    assert stats["violations_total"] == 0 and stats["peak_messages_per_s"] <= 50


def test_a_stall_of_the_gateways_own_loop_does_not_bunch_a_paced_client() -> None:
    # Given a client sending 48 messages a second, evenly, for 2.5 s
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> None:
            ib = await connect(sim.port)
            ib.client.MaxRequests = 0  # our spacing only
            for i in range(120):
                await asyncio.sleep(1 / 48)  # never catching up: the client itself never bunches
                if i == 40:  # When the gateway's loop is busy for 0.4 s (a big bar history)
                    sim.loop.call_soon_threadsafe(time.sleep, 0.4)
                ib.client.reqCurrentTime()
            await asyncio.sleep(0.6)
            ib.disconnect()

        run_client(scenario)
        stats = sim.stats()
    # Then the messages that arrived during the stall count when they arrived, not all at
    # once when the loop got to them: no second ever held more than 50
    assert stats["messages_by_type"]["49"] == 120
    assert stats["violations_total"] == 0 and stats["peak_messages_per_s"] <= 50


class StallingSelect:
    """``select`` for arrivals.py whose poll, once woken ``after`` times, stalls 0.3 s before
    it returns: the reader thread late, as on a loaded machine, while data keeps coming."""

    POLLIN = select.POLLIN

    def __init__(self, after: int, stall_s: float = 0.3) -> None:
        self.after = after
        self.stall_s = stall_s
        self.wakes = 0
        self.stalled = threading.Event()

    def poll(self) -> Any:
        real = select.poll()
        outer = self

        class Poller:
            def register(self, fd: Any, mask: int) -> None:
                real.register(fd, mask)

            def poll(self, timeout_ms: float) -> list[tuple[int, int]]:
                events = real.poll(timeout_ms)
                if events:
                    outer.wakes += 1
                    if outer.wakes == outer.after:
                        time.sleep(outer.stall_s)
                        outer.stalled.set()
                return events

        return Poller()


def test_a_stalled_reader_thread_does_not_bunch_a_paced_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client sending evenly, ~45 messages a second, and a gateway whose reader thread
    # stalls for 0.3 s in the middle of it
    stalling = StallingSelect(after=30)
    monkeypatch.setattr(arrivals, "select", stalling)
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> None:
            ib = await connect(sim.port)
            ib.client.MaxRequests = 0  # our spacing only
            for _ in range(100):
                await asyncio.sleep(1 / 48)  # never catching up: the client never bunches
                ib.client.reqCurrentTime()
            await asyncio.sleep(0.6)
            ib.disconnect()

        run_client(scenario)
        stats = sim.stats()
    # Then the messages sent during the stall count when they arrived, not when the thread
    # read them (all at once: 60 in 0.95 s, a violation and a dropped connection)
    assert stalling.stalled.is_set()
    assert stats["messages_by_type"]["49"] == 100
    assert stats["violations_total"] == 0 and stats["peak_messages_per_s"] <= 50


def test_the_101st_market_data_line_gets_101() -> None:
    scenario_ = make_scenario(TUESDAY_MORNING, rules={"max_messages_per_s": 10_000})
    with ThreadedSim(scenario_) as sim:

        async def scenario() -> tuple[list[int], int, int]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            ib.client.MaxRequests = 0
            contracts = [Stock(f"SYM{1 + i % 30:02d}", "SMART", "USD") for i in range(101)]
            tickers = [ib.reqMktData(c) for c in contracts]
            await errors.wait_code(101)
            lines = sim.stats()["market_data_lines_open"]
            req_ids = [ib.wrapper.ticker2ReqId["mktData"][t] for t in tickers]
            rejected = [i for i, r in enumerate(req_ids) if 101 in errors.for_req(r)]
            for c in contracts:
                ib.cancelMktData(c)
            await asyncio.sleep(0.3)
            ib.disconnect()
            return rejected, lines, sim.stats()["market_data_lines_open"]

        rejected, lines_during, lines_after = run_client(scenario)
        stats = sim.stats()
    assert rejected == [100]
    assert lines_during == 100 and lines_after == 0
    assert stats["violations"].get("101") == 1
    assert stats["market_data_lines_peak"] == 100


def test_pending_snapshots_hold_lines() -> None:
    scenario_ = make_scenario(
        TUESDAY_MORNING,
        rules={"max_messages_per_s": 10_000, "max_market_data_lines": 10},
        latency={"snapshot_end_s": 1.0},
    )
    with ThreadedSim(scenario_) as sim:

        async def scenario() -> list[int]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            for i in range(11):
                ib.reqMktData(Stock(f"SYM{i + 1:02d}", "SMART", "USD"), snapshot=True)
            await errors.wait_code(101)
            ib.disconnect()
            return errors.codes()

        codes = run_client(scenario)
    assert codes.count(101) == 1


def test_reused_ticker_id_gets_322() -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> tuple[int, int, str]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            spy = Stock("SPY", "SMART", "USD")
            req_id = ib.client.getReqId()
            ib.client.reqMktData(req_id, spy, "", False, False, [])
            ib.client.reqMktData(req_id, spy, "", False, False, [])
            err = await errors.wait_code(322)
            ib.client.cancelMktData(req_id)
            await asyncio.sleep(0.1)
            ib.disconnect()
            return err

        req_id, _code, message = run_client(scenario)
        stats = sim.stats()
    assert "Duplicate ticker id" in message
    assert stats["violations"] == {"322": 1} and stats["market_data_lines_open"] == 0


def test_reused_order_id_gets_103() -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> tuple[int, int, int]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            spy = Stock("SPY", "SMART", "USD")
            await ib.qualifyContractsAsync(spy)
            order = LimitOrder("BUY", 1, 10.0)
            trade = ib.placeOrder(spy, order)
            await asyncio.sleep(0.1)
            ib.cancelOrder(order)
            await asyncio.wait_for(trade.cancelledEvent, 5)
            ib.client.placeOrder(order.orderId, spy, LimitOrder("BUY", 1, 10.0))  # same id
            req_id, code, _msg = await errors.wait_code(103)
            ib.disconnect()
            return req_id, code, order.orderId

        req_id, code, order_id = run_client(scenario)
        assert sim.stats()["violations"] == {"103": 1}
    assert req_id == order_id


def test_client_id_in_use_gets_326_and_is_closed() -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> tuple[tuple[int, int, str], bool, bool]:
            client_id = next_client_id()
            first = await connect(sim.port, client_id)
            second = IB()
            errors = ErrorLog(second)
            attempt = asyncio.ensure_future(
                second.connectAsync("127.0.0.1", sim.port, clientId=client_id, timeout=5)
            )
            err = await errors.wait_code(326)
            await asyncio.sleep(0.3)  # the sim closes the socket 0.1 s later (test scenario)
            closed = not second.client.conn.isConnected()
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            first_ok = first.isConnected()
            first.disconnect()
            return err, closed, first_ok

        (req_id, _code, message), closed, first_ok = run_client(scenario)
        stats = sim.stats()
    assert req_id == -1 and "client id is already in use" in message
    assert closed and first_ok
    assert stats["violations"] == {"326": 1} and stats["clients_rejected"] == 1


def test_historical_pacing_gets_162_when_on() -> None:
    rules = {"historical_pacing": True, "hist_max_requests": 4}
    with ThreadedSim(make_scenario(TUESDAY_MORNING, rules=rules)) as sim:

        async def scenario() -> tuple[int, int, list[int]]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            spy = Stock("SPY", "SMART", "USD")
            first = await ib.reqHistoricalDataAsync(spy, "", "600 S", "1 min", "TRADES", False)
            again = await ib.reqHistoricalDataAsync(spy, "", "600 S", "1 min", "TRADES", False)
            for i in range(4):  # different requests, but more than 4 in the window
                sym = Stock(f"SYM{i + 1:02d}", "SMART", "USD")
                await ib.reqHistoricalDataAsync(sym, "", "600 S", "1 min", "TRADES", False)
            ib.disconnect()
            return len(first), len(again), errors.codes()

        first, again, codes = run_client(scenario)
        stats = sim.stats()
    assert first == 10 and again == 0
    assert codes.count(162) == 2  # the identical one, then the 5th within the window
    assert stats["violations"] == {"162": 2}


def test_historical_pacing_off_by_default() -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> list[int]:
            ib = await connect(sim.port)
            spy = Stock("SPY", "SMART", "USD")
            sizes = []
            for _ in range(3):
                bars = await ib.reqHistoricalDataAsync(spy, "", "600 S", "1 min", "TRADES", False)
                sizes.append(len(bars))
            ib.disconnect()
            return sizes

        assert run_client(scenario) == [10, 10, 10]
        assert sim.stats()["violations_total"] == 0


def test_generic_ticks_with_a_snapshot_get_414() -> None:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as sim:

        async def scenario() -> tuple[int, int, str]:
            ib = await connect(sim.port)
            errors = ErrorLog(ib)
            ib.reqMktData(Stock("SPY", "SMART", "USD"), "236", snapshot=True)
            err = await errors.wait_code(414)
            ib.disconnect()
            return err

        _req_id, _code, message = run_client(scenario)
        assert "generic ticks" in message
        assert sim.stats()["violations"] == {"414": 1}


class _ClosedPeer:
    """A reader whose client's FIN is in but not yet delivered to the loop."""

    def __init__(self, closed: bool) -> None:
        self.closed = closed
        self.stopped = False

    def peer_closed(self) -> bool:
        return self.closed

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize("closed", [True, False])
def test_a_client_id_whose_socket_is_closed_is_free_before_the_loop_hears_of_it(
    closed: bool,
) -> None:
    # Given a session holding client id 7 whose client has (or has not) closed its socket
    async def scenario() -> tuple[bool, bool]:
        server = SimServer(make_scenario(TUESDAY_MORNING))
        old, new = Session(server, 1), Session(server, 2)
        server.session_started(old)
        server.session_started(new)
        assert server.register_client(old, 7)
        old.reader = _ClosedPeer(closed)  # type: ignore[assignment]
        # When another connection asks for client id 7
        return server.register_client(new, 7), old.ended

    taken, old_ended = asyncio.run(scenario())
    # Then a closed one gives its id up at once (as IBKR, once the FIN is in); an open one
    # keeps it (326 for the newcomer)
    assert taken is closed and old_ended is closed
