"""A backtest data set or a flight recording as the simulator's market: yesterday on the wire.

    scenario  market: {data: DIR, first_day: D1, last_day: D2}
      -> supervisor/backtest/data.py load(DIR, the scenario's symbols, D1, D2, NYSE)
         (the backtest's own loader and checks: a bad file is a scenario error naming the
         file, the line and the problem)
      -> DataPath per symbol (datapath.py), in place of its synthetic PricePath: the same
         interface, so quotes, bars, option prices (Black-Scholes on this price) and fills
         follow the data
    scenario  market: {recording: DIR}
      -> supervisor/recording/reader.py read_recording(DIR): the 1-minute bars the recorded
         run was given, merged per symbol, and its hourly bars (served as recorded, not
         remade from minutes it does not hold); clock.start null: its first cycle

A price inside a bar minute runs from the bar's open to its close; between bars (the night, a
holiday) it stays at the last close; a minute without a bar gets no bar (IBKR sends none for
a minute nothing traded), so 1-minute bars are the file's rows exactly. The chain's strike
grid is laid around the data's first open (``with_market_data``). ``first_day`` and
``last_day`` default to the clock start's exchange day. Symbols of ``extra_symbols`` keep
their synthetic paths.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import model_validator

from common.calendar import EXCHANGE_TZ, trading_day
from tools.gateway_sim.timing import Model

if TYPE_CHECKING:  # the loader (and pyarrow behind it) only when a scenario names data
    from supervisor.backtest.data import DataSet, MinuteBars


class MarketSpec(Model):
    """``market``: where the prices come from (neither: the synthetic paths)."""

    data: Path | None = None
    recording: Path | None = None  # a flight recording's directory: its 1-minute bars
    first_day: date | None = None
    last_day: date | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MarketSpec:
        if self.data is not None and self.recording is not None:
            raise ValueError("market: data or recording, not both")
        return self

    @property
    def source(self) -> Path | None:
        return self.data or self.recording


Ohlcv = tuple[float, ...]  # open, high, low, close, volume


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


@dataclass(frozen=True)
class RecordedMarket:
    """What a recording holds of the market: each symbol's 1-minute bars and its hourly bars
    (as recorded: resampling minutes the recording does not hold would change them), and the
    first cycle's instant."""

    minutes: dict[str, MinuteBars]
    hours: dict[str, dict[int, Ohlcv]]
    first_cycle: float


@lru_cache(maxsize=4)
def recorded(folder: Path, symbols: tuple[str, ...]) -> RecordedMarket:
    """A recording's bars per symbol, every answer merged (the latest of a bar winning)."""
    from supervisor.recording.reader import RecordingError, read_recording

    try:
        recording = read_recording(folder)
    except RecordingError as exc:
        raise DataSetError(f"market.recording: {exc}") from None
    rows: dict[tuple[str, int], dict[float, tuple[float, ...]]] = {}
    for (symbol, size, _rth), answer in recording.recorded.bars:
        if size in (1, 60) and answer.value is not None:
            b, into = answer.value, rows.setdefault((symbol, size), {})
            for i, ts in enumerate(b.ts):
                into[ts] = (b.open[i], b.high[i], b.low[i], b.close[i], b.volume[i])
    missing = [s for s in symbols if not rows.get((s, 1))]
    if missing:
        raise DataSetError(f"market.recording {folder}: no 1-minute bars of {', '.join(missing)}")
    hours = {s: {int(t): r for t, r in rows.get((s, 60), {}).items()} for s in symbols}
    minutes = {s: minute_bars(s, rows[(s, 1)]) for s in symbols}
    return RecordedMarket(minutes, hours, recording.recorded.cycles[0])


def minute_bars(symbol: str, rows: dict[float, tuple[float, ...]]) -> MinuteBars:
    from supervisor.backtest.data import MinuteBars

    order = sorted(rows)
    columns = [array("d", (rows[t][k] for t in order)) for k in range(5)]
    return MinuteBars(symbol, array("d", order), *columns)


def scenario_bars(scenario: Any) -> Mapping[str, MinuteBars]:
    """The bars each listed symbol trades, from the data set or the recording."""
    spec: MarketSpec = scenario.market
    symbols = tuple(s.symbol for s in scenario.symbols)
    if spec.recording is not None:
        return recorded(spec.recording, symbols).minutes
    assert spec.data is not None
    start = scenario.clock.start.timestamp() if scenario.clock.start is not None else None
    first, last = days(spec, start)
    return data_set(spec.data, symbols, first, last).bars


def scenario_hours(scenario: Any) -> Mapping[str, dict[int, Ohlcv]]:
    """A recording's hourly bars per symbol (a data set has none: they come from minutes)."""
    spec: MarketSpec = scenario.market
    if spec.recording is None:
        return {}
    return recorded(spec.recording, tuple(s.symbol for s in scenario.symbols)).hours


def with_market_data(scenario: Any) -> Any:
    """The scenario with each symbol's base price (its chain's centre) its bars' first open,
    and a recording's first cycle as the clock's start if it has none; DataSetError if the
    data cannot be served."""
    bars = scenario_bars(scenario)
    symbols = [
        s.model_copy(update={"price": bars[s.symbol].open[0]}) if len(bars[s.symbol].ts) else s
        for s in scenario.symbols
    ]
    update: dict[str, Any] = {"symbols": symbols}
    if scenario.market.recording is not None and scenario.clock.start is None:
        first = recorded(scenario.market.recording, tuple(bars)).first_cycle
        start = datetime.fromtimestamp(first, ZoneInfo(EXCHANGE_TZ))
        update["clock"] = scenario.clock.model_copy(update={"start": start})
    return scenario.model_copy(update=update)
