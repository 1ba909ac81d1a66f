"""A backtest data set as the simulator's market: yesterday's bars on the wire.

    scenario  market: {data: DIR, first_day: D1, last_day: D2}
      -> supervisor/backtest/data.py load(DIR, the scenario's symbols, D1, D2, NYSE)
         (the backtest's own loader and checks: a bad file is a scenario error naming the
         file, the line and the problem)
      -> DataPath per symbol (datapath.py), in place of its synthetic PricePath: the same
         interface, so quotes, bars, option prices (Black-Scholes on this price) and fills
         follow the data

A price inside a bar minute runs from the bar's open to its close; between bars (the night, a
holiday) it stays at the last close; a minute without a bar gets no bar (IBKR sends none for
a minute nothing traded), so 1-minute bars are the file's rows exactly. The chain's strike
grid is laid around the data's first open (``with_market_data``). ``first_day`` and
``last_day`` default to the clock start's exchange day. Symbols of ``extra_symbols`` keep
their synthetic paths.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.calendar import EXCHANGE_TZ, trading_day
from tools.gateway_sim.timing import Model

if TYPE_CHECKING:  # the loader (and pyarrow behind it) only when a scenario names data
    from supervisor.backtest.data import DataSet


class MarketSpec(Model):
    """``market``: where the prices come from (no ``data``: the synthetic paths)."""

    data: Path | None = None
    first_day: date | None = None
    last_day: date | None = None


class DataSetError(ValueError):
    """The scenario's data set cannot be served (said as the loader says it)."""


def days(spec: MarketSpec, start_ts: float | None) -> tuple[date, date]:
    if spec.first_day is not None and spec.last_day is not None:
        return spec.first_day, spec.last_day
    if start_ts is None:
        raise DataSetError("market.data: name market.first_day and last_day (clock.start is null)")
    day = trading_day(start_ts, EXCHANGE_TZ)
    return spec.first_day or day, spec.last_day or day


@lru_cache(maxsize=4)  # the scenario's check and the market load it once
def data_set(folder: Path, symbols: tuple[str, ...], first: date, last: date) -> DataSet:
    from common.calendar import nyse
    from supervisor.backtest.data import load
    from supervisor.backtest.files import DataError

    try:
        return load(folder, symbols, first, last, nyse())
    except DataError as exc:
        raise DataSetError(f"market.data {folder}:\n{exc}") from None


def scenario_data(scenario: Any) -> DataSet:
    spec: MarketSpec = scenario.market
    assert spec.data is not None
    start = scenario.clock.start.timestamp() if scenario.clock.start is not None else None
    first, last = days(spec, start)
    return data_set(spec.data, tuple(s.symbol for s in scenario.symbols), first, last)


def with_market_data(scenario: Any) -> Any:
    """The scenario with each data symbol's base price (its chain's centre) the data's first
    open; DataSetError if the data cannot be served."""
    bars = scenario_data(scenario).bars
    symbols = [
        s.model_copy(update={"price": bars[s.symbol].open[0]}) if len(bars[s.symbol].ts) else s
        for s in scenario.symbols
    ]
    return scenario.model_copy(update={"symbols": symbols})
