"""IBKRBroker's connection handling against the simulated gateway: refused connects, client id
in use, a dropped socket and the automatic reconnect, the gateway losing its link to IBKR
(1100/1101), and the circuit breaker when the gateway stays away."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.broker.base import BrokerError, ConnectionLost, SymbolDataError
from supervisor.broker.ibkr.broker import IBKRBroker
from tests.conftest_sim import connect, make_scenario, next_client_id, run_client
from tests.sessions import TUESDAY_MORNING
from tests.test_ibkr_broker import settings, wait_until, with_broker
from tools.gateway_sim import ThreadedSim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSim]:
    with ThreadedSim(make_scenario(TUESDAY_MORNING)) as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_a_clear_broker_error() -> None:
    port = free_port()

    async def main() -> Any:
        broker = IBKRBroker(settings(port))
        started = time.monotonic()
        with pytest.raises(BrokerError) as info:
            await broker.connect()
        assert not broker.is_connected()
        with pytest.raises(ConnectionLost):
            await broker.quote("SPY")
        return time.monotonic() - started, info.value

    _, error = run_client(main)
    assert f"127.0.0.1:{port}" in str(error) and "nothing listening" in str(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_client_id_in_use_connects_with_the_next_id(sim: ThreadedSim) -> None:
    taken = next_client_id()
    next_client_id()  # keep taken + 1 free for the broker

    async def main() -> Any:
        holder = await connect(sim.port, taken)
        broker = IBKRBroker(settings(sim.port, {"client_id": taken}), now=sim.now)
        try:
            started = time.monotonic()
            await broker.connect()
            elapsed = time.monotonic() - started
            quote = await broker.quote("AAPL")
            # the broker asked the gateway to pace it (+PACEAPI), the plain client did not
            paced = sim.call(
                lambda: {s.client_id: s.pacer is not None for s in sim.server.sessions}
            )
            assert paced == {taken: False, broker.client_id: True}
            return broker.client_id, elapsed, quote
        finally:
            await broker.disconnect()
            holder.disconnect()

    rejected_before = sim.stats()["clients_rejected"]
    client_id, _, quote = run_client(main)
    assert client_id == taken + 1
    assert math.isfinite(quote.last)
    assert sim.stats()["clients_rejected"] == rejected_before + 1


def test_dropped_connection_fails_fast_then_reconnects() -> None:
    # Given a gateway that drops the first connection 1 s after it connected, while a
    # snapshot that never ends, and never gets its bid and ask, is in flight
    scenario = make_scenario(
        TUESDAY_MORNING,
        faults=[
            {"kind": "disconnect", "at_s": 1.0},
            {"kind": "snapshot_never_ends", "symbol": "SYM11", "every_connection": True},
        ],
        quirks=[{"symbol": "SYM11", "kind": "missing"}],
    )

    async def body(broker: IBKRBroker) -> Any:
        assert (await broker.quote("SPY")).bid > 0
        started = time.monotonic()
        # When the socket drops: the request in flight fails with ConnectionLost
        with pytest.raises(ConnectionLost):
            await broker.quote("SYM11")
        in_flight_s = time.monotonic() - started
        assert not broker.is_connected()
        # and every call during the outage fails at once, without sending anything
        sent_before = broker.stats()["paced_messages_total"]
        for call in (
            broker.quote("SPY"),
            broker.bars("SPY", 30),
            broker.chain("SPY"),
            broker.account(),
        ):
            with pytest.raises(ConnectionLost):
                await call
        outage_sent = broker.stats()["paced_messages_total"] - sent_before
        with pytest.raises(ConnectionLost, match="reconnecting"):
            await broker.connect()  # the reconnect loop owns the connection meanwhile
        # Then the broker reconnects by itself and serves again, with nothing left behind
        await wait_until(broker.is_connected, 5.0)
        quote = await broker.quote("SPY")
        await wait_until(lambda: broker.stats()["lines_in_use"] == 0)  # its cancel went out
        return in_flight_s, outage_sent, quote, broker.stats()

    with ThreadedSim(scenario) as sim:
        in_flight_s, outage_sent, quote, stats = with_broker(
            sim, body, ibkr={"snapshot_timeout_s": 5.0, "reconnect_initial_s": 0.4}
        )
        md_type_requests = sim.stats()["messages_by_type"]["59"]
    # the request in flight ended with the drop, not with its 5 s snapshot timeout
    assert in_flight_s < 5.0 and outage_sent == 0
    assert math.isfinite(quote.last)
    assert stats["disconnects_total"] == 1 and stats["reconnects_total"] == 1
    assert stats["live_tickers"] == 0 and stats["lines_in_use"] == 0
    assert stats["pending_requests"] == 0
    assert md_type_requests == 2  # the market data type was applied again


def test_a_reconnect_waits_for_its_own_client_id_rather_than_take_the_next() -> None:
    # Given a gateway that drops the broker 1 s after it connected, and whose client id is then
    # held for a while by another session (as IBKR holds a dead socket's id until it notices)
    scenario = make_scenario(TUESDAY_MORNING, faults=[{"kind": "disconnect", "at_s": 1.0}])
    own = next_client_id()
    next_client_id()  # the next id is free: a broker that gave up its own would take it

    async def main_for(sim: ThreadedSim) -> Any:
        broker = IBKRBroker(
            settings(
                sim.port,
                {
                    "client_id": own,
                    "reconnect_initial_s": 0.3,
                    "reconnect_max_s": 0.3,
                    "circuit_failures": 50,
                },
            ),
            now=sim.now,
        )
        await broker.connect()
        try:
            await wait_until(lambda: not broker.is_connected(), 5.0)
            holder = await connect(sim.port, own)
            await asyncio.sleep(1.5)  # the broker's retries meet 326 meanwhile
            holder.disconnect()
            await wait_until(broker.is_connected, 10.0)
            return broker.client_id
        finally:
            await broker.disconnect()

    with ThreadedSim(scenario) as sim:
        rejected_before = sim.stats()["clients_rejected"]
        client_id = run_client(lambda: main_for(sim), 40)
        rejected = sim.stats()["clients_rejected"] - rejected_before
    # Then it came back as itself (its orders stay cancellable), after meeting 326 at least once
    assert client_id == own
    assert rejected >= 1


def test_gateway_link_lost_1100_then_restored_1101() -> None:
    scenario = make_scenario(
        TUESDAY_MORNING,
        faults=[
            {"kind": "error", "code": 1100, "at_s": 0.5},
            {"kind": "error", "code": 1101, "at_s": 1.2},
        ],
    )

    async def body(broker: IBKRBroker) -> Any:
        await wait_until(lambda: not broker.is_connected(), 3.0)
        with pytest.raises(ConnectionLost, match="1100"):
            await broker.quote("SPY")
        await wait_until(broker.is_connected, 3.0)
        quote = await broker.quote("SPY")
        await asyncio.sleep(0.1)
        return quote, broker.stats()

    with ThreadedSim(scenario) as sim:
        quote, stats = with_broker(sim, body)
        md_type_requests = sim.stats()["messages_by_type"]["59"]
    assert math.isfinite(quote.bid)
    assert stats["errors.1100"] == 1 and stats["errors.1101"] == 1
    assert stats.get("disconnects_total", 0) == 0  # the socket stayed up throughout
    assert md_type_requests == 2  # 1101: "data lost", so the data type is sent again


def test_circuit_opens_while_the_gateway_is_away_and_closes_on_its_return() -> None:
    first = ThreadedSim(make_scenario(TUESDAY_MORNING))
    port = first.port
    second: list[ThreadedSim] = []
    ibkr = {
        "circuit_failures": 2,
        "circuit_cooldown_s": 1.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.1,
        "reconnect_jitter": 0.0,
    }

    async def body(broker: IBKRBroker) -> Any:
        # Given the gateway goes away (a daily restart)
        await asyncio.to_thread(first.close)
        # When the reconnects keep failing, the circuit opens
        await wait_until(lambda: broker.stats()["circuit_state"] == 1, 5.0)
        opened = broker.stats()
        with pytest.raises(ConnectionLost, match="reconnecting"):
            await broker.quote("SPY")
        # Then, with the gateway back, the probe after the cool-down reconnects
        second.append(await asyncio.to_thread(ThreadedSim, make_scenario(TUESDAY_MORNING), port))
        await wait_until(broker.is_connected, 5.0)
        return opened, await broker.quote("SPY"), broker.stats()

    try:
        opened, quote, stats = with_broker(first, body, ibkr=ibkr)
    finally:
        first.close()
        for sim in second:
            sim.close()
    assert opened["connect_failures_total"] >= 2 and opened["circuit_opened_total"] == 1
    assert math.isfinite(quote.last)
    assert stats["circuit_state"] == 0 and stats["reconnects_total"] == 1


def test_a_symbol_error_is_not_a_connection_problem(sim: ThreadedSim) -> None:
    async def body(broker: IBKRBroker) -> Any:
        with pytest.raises(SymbolDataError):
            await broker.quote("NOPE")
        return broker.is_connected(), broker.stats()

    connected, stats = with_broker(sim, body)
    assert connected and stats.get("disconnects_total", 0) == 0


def test_concurrent_connects_make_one_connection(sim: ThreadedSim) -> None:
    async def main() -> Any:
        broker = IBKRBroker(settings(sim.port), now=sim.now)
        before = sim.stats()["connections_total"]
        await asyncio.gather(broker.connect(), broker.connect(), broker.connect())
        try:
            return sim.stats()["connections_total"] - before, broker.is_connected()
        finally:
            await broker.disconnect()

    opened, connected = run_client(main)
    assert opened == 1 and connected


def test_a_request_left_unanswered_by_a_live_gateway_is_probed_not_given_up() -> None:
    # Given a gateway that never answers SYM11's historical request but answers everything else
    scenario = make_scenario(
        TUESDAY_MORNING,
        faults=[{"kind": "historical_never_answers", "symbol": "SYM11", "every_connection": True}],
    )

    async def body(broker: IBKRBroker) -> dict[str, float]:
        # When the request waits past the probe's quiet time and the probe's timeout
        with pytest.raises(SymbolDataError):
            await broker.bars("SYM11", 30)
        # Then the gateway was asked whether it is there, answered, and stays connected
        return broker.stats()

    with ThreadedSim(scenario) as sim:
        stats = with_broker(
            sim,
            body,
            ibkr={"historical_timeout_s": 3.0, "probe_after_s": 0.5, "probe_timeout_s": 1.0},
        )
    assert stats["liveness_probes_total"] >= 1
    assert stats.get("gateway_silent_total", 0) == 0 and stats.get("disconnects_total", 0) == 0
    assert stats["connected"] == 1.0
