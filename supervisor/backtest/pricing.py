"""What a backtest's options cost and which are listed, where the data has no quotes.

    chain_of     the day's chain: the data's own contracts of the day when it has an options
                 file, else a synthetic one (the stub's: strikes around the price at the
                 symbol's usual increments, weekly Fridays by the exchange calendar, dailies
                 for SPY, QQQ and IWM)
    model        Black-Scholes (broker/modelled.py, the replay's model: European, no
                 dividends) at the IV of DIR/IV.csv for the day, else ``backtest.iv``; bid and
                 ask the model price less and plus ``backtest.option_half_spread`` of it (at
                 least a cent); flagged: the broker counts each one
    from_row     a data row's quote as the venue would have sent it

Pure: no clock, no I/O.
"""

from __future__ import annotations

from datetime import date

from common.calendar import ExchangeCalendar
from common.config import BacktestSettings
from common.messages import OptionChain, OptionContract, OptionQuote
from supervisor.backtest.quotes_data import IvSeries, OptionRows, RowQuote
from supervisor.broker.modelled import model_quote
from supervisor.broker.stub import stub_expiries, stub_strikes


def chain_of(
    symbol: str,
    today: date,
    spot: float,
    calendar: ExchangeCalendar,
    rows: OptionRows | None,
) -> OptionChain:
    listed = rows.listed.get(today) if rows is not None else None
    if listed:
        stamp = today.strftime("%Y%m%d")
        expirations = tuple(sorted({e for e, _ in listed if e >= stamp}))
        strikes = tuple(sorted({k for _, k in listed}))
    else:
        expirations, strikes = stub_expiries(symbol, today, calendar), stub_strikes(spot)
    return OptionChain(symbol, expirations, strikes, 100, "SMART", symbol)


def iv_for(symbol: str, day: date, series: IvSeries | None, settings: BacktestSettings) -> float:
    found = series.at(symbol, day) if series is not None else None
    return found if found is not None else settings.iv


def model(
    contract: OptionContract, spot: float, iv: float, now: float, settings: BacktestSettings
) -> OptionQuote:
    return model_quote(contract, spot, iv, now, settings.option_half_spread)


def from_row(contract: OptionContract, row: RowQuote, spot: float) -> OptionQuote:
    mid = (row.bid + row.ask) / 2
    return OptionQuote(
        contract=contract,
        bid=row.bid,
        ask=row.ask,
        last=round(mid, 2),
        iv=row.iv,
        delta=row.delta,
        und_price=spot,
        ts=row.ts,
    )
