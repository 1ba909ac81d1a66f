"""Universe: the venue asked once, unknown symbols named in one WARNING and dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from supervisor.broker.base import ConnectionLost
from supervisor.runtime.universe import NoKnownSymbols, Universe

pytestmark = pytest.mark.timeout(30)


class ListingBroker:
    """Answers unknown_symbols from a fixed listing; counts the calls."""

    name = "ibkr"

    def __init__(self, unknown: Sequence[str], down: bool = False) -> None:
        self.unknown = set(unknown)
        self.down = down
        self.calls = 0

    async def unknown_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        self.calls += 1
        if self.down:
            raise ConnectionLost("gateway restarting")
        return {s: f"{s}: error 200: No security definition" for s in symbols if s in self.unknown}


def known(universe: Universe, broker: ListingBroker) -> tuple[str, ...]:
    return asyncio.run(universe.symbols(broker))  # type: ignore[arg-type]


def test_unknown_symbols_are_named_once_and_dropped_for_the_run(caplog):
    # Given a universe with two symbols the venue does not list
    broker = ListingBroker(["ZZZZ", "SPYY"])
    universe = Universe(["SPY", "ZZZZ", "QQQ", "SPYY"])
    caplog.set_level(logging.INFO, logger="supervisor.runtime.universe")
    # When three cycles ask for their symbols
    runs = [known(universe, broker) for _ in range(3)]
    # Then each runs the known ones, in the configured order, and the venue was asked once
    assert runs == [("SPY", "QQQ")] * 3 and broker.calls == 1
    # And one WARNING names both, with the venue's words
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "2 of 4 symbols unknown to ibkr, dropped from the universe for this run: "
        "ZZZZ: error 200: No security definition; SPYY: error 200: No security definition"
    )
    assert record.symbols == ["ZZZZ", "SPYY"]
    assert universe.unknown == {
        "ZZZZ": "ZZZZ: error 200: No security definition",
        "SPYY": "SPYY: error 200: No security definition",
    }


def test_a_universe_the_venue_knows_entirely_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="supervisor.runtime.universe")
    assert known(Universe(["SPY", "QQQ"]), ListingBroker([])) == ("SPY", "QQQ")
    assert caplog.records == []


def test_a_lost_connection_leaves_the_check_for_the_next_cycle():
    broker = ListingBroker(["ZZZZ"], down=True)
    universe = Universe(["SPY", "ZZZZ"])
    with pytest.raises(ConnectionLost):
        known(universe, broker)
    broker.down = False
    assert known(universe, broker) == ("SPY",) and broker.calls == 2


def test_a_universe_of_unknown_symbols_only_stops_the_run():
    with pytest.raises(
        NoKnownSymbols, match="no symbol of universe.symbols is known to ibkr: ZZZZ, SPYY"
    ):
        known(Universe(["ZZZZ", "SPYY"]), ListingBroker(["ZZZZ", "SPYY"]))
