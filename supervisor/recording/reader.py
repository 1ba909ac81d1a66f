"""A recording read back: its meta.json and every kind's rows as the broker's own values.

    read_recording(DIR) --> Recording(path, meta, recorded)
        recorded: supervisor/broker/replay.py's ``Recorded``, each answer keyed by its
        request (a symbol; bars by size; an option contract; hours and closes by symbol/day)

A recording cut short (the run crashed or still runs) is read as far as its part files go
(format.read_kind). What is not a readable recording of this format raises RecordingError,
whose text names the path and the problem (the ``replay`` command's exit 2).
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from common.calendar import TradingHours
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, Quote, Right
from supervisor.broker.base import AccountSnapshot
from supervisor.broker.replay import (
    REPLAY_ACCOUNT,
    BarsKey,
    CloseKey,
    OptionKey,
    Recorded,
)
from supervisor.broker.replay_index import Answer
from supervisor.recording import format as fmt

NAN = math.nan
ACCOUNT_KIND = "account"  # not in format 1: read once the recorder records Broker.account()
QUOTE_FIELDS = ("bid", "ask", "last", "close", "bid_size", "ask_size", "volume")
OPTION_FIELDS = (
    "bid",
    "ask",
    "last",
    "volume",
    "iv",
    "delta",
    "gamma",
    "vega",
    "theta",
    "und_price",
)
Row = dict[str, Any]


class RecordingError(Exception):
    """Not a recording this version reads: the text says which path and why."""


@dataclass(frozen=True)
class Recording:
    path: Path
    meta: dict[str, Any]
    recorded: Recorded

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def settings(self) -> dict[str, Any] | None:
        """The run's settings as it loaded them (secrets masked), if the meta holds them."""
        found = self.meta.get("settings")
        return found if isinstance(found, dict) else None


def read_recording(path: Path) -> Recording:
    meta = read_meta(path)
    try:
        tables = {kind: fmt.read_kind(path, kind) for kind in fmt.SCHEMAS}
    except (OSError, pa.ArrowException) as exc:
        raise RecordingError(f"{path}: cannot read its Parquet files: {exc}") from None
    cycles = tuple(float(t) for t in tables[fmt.CYCLES].column("ts").to_pylist())
    if not cycles:
        raise RecordingError(f"{path}: no cycle was recorded (nothing to replay)")
    closes, hours = _hours(tables[fmt.HOURS])
    recorded = Recorded(
        cycles=cycles,
        quotes=list(_quotes(tables[fmt.QUOTES])),
        bars=list(_bars(tables[fmt.BARS])),
        chains=list(_chains(tables[fmt.CHAINS])),
        option_quotes=list(_option_quotes(tables[fmt.OPTION_QUOTES])),
        hours=hours,
        closes=closes,
        accounts=list(_accounts(tables[ACCOUNT_KIND])) if ACCOUNT_KIND in tables else [],
        account=str(meta.get("account") or REPLAY_ACCOUNT),
    )
    return Recording(path, meta, recorded)


def read_meta(path: Path) -> dict[str, Any]:
    """The recording's meta.json, its format version checked."""
    if not path.is_dir():
        raise RecordingError(f"{path}: not a directory (a recording is one, under recording.dir)")
    file = path / fmt.META_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordingError(f"{path}: no {fmt.META_FILE}: not a recording") from None
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{file}: unreadable: {exc}") from None
    if not isinstance(meta, dict):
        raise RecordingError(f"{file}: not a JSON object")
    version = meta.get("format_version")
    if version != fmt.FORMAT_VERSION:
        raise RecordingError(
            f"{file}: format version {version!r}; this version reads {fmt.FORMAT_VERSION}"
        )
    return meta


def _rows(table: pa.Table) -> Iterator[Row]:
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for i in range(table.num_rows):
        yield {name: values[i] for name, values in columns.items()}


def _f(value: float | None) -> float:
    return NAN if value is None else float(value)


def _answer(row: Row, value: Any) -> Answer[Any]:
    error = row["error"]
    return Answer(float(row["ts"]), None if error is not None else value, error)


def _quotes(table: pa.Table) -> Iterator[tuple[str, Answer[Quote]]]:
    for r in _rows(table):
        values = {f: _f(r[f]) for f in QUOTE_FIELDS}
        quote = Quote(r["symbol"], **values, ts=_f(r["quote_ts"]))
        yield r["symbol"], _answer(r, quote)


def _bars(table: pa.Table) -> Iterator[tuple[BarsKey, Answer[Bars]]]:
    names = ("bar_ts", "open", "high", "low", "close", "volume")
    columns = [_float_lists(table.column(n)) for n in names]  # the bulk: no float objects
    keys = (table.column(n).to_pylist() for n in ("symbol", "bar_minutes", "rth", "ts", "error"))
    for i, (symbol, size, rth, ts, error) in enumerate(zip(*keys, strict=True)):
        bars = None if error is not None else Bars(symbol, *(c[i] for c in columns))
        yield (symbol, int(size), bool(rth)), Answer(float(ts), bars, error)


def _float_lists(column: pa.ChunkedArray) -> list[array[float]]:
    """A list<float64> column as one array('d') a row, copied from Arrow's buffers (a day
    of bars is millions of floats: as Python lists first they cost ten times the memory)."""
    out: list[array[float]] = []
    for chunk in column.chunks:
        values = chunk.values
        data = array("d")
        if len(values):
            raw = values.buffers()[1]
            data.frombytes(memoryview(raw)[values.offset * 8 : (values.offset + len(values)) * 8])
        offsets = chunk.offsets.to_pylist()
        out += [data[a:b] for a, b in zip(offsets, offsets[1:], strict=False)]
    return out


def _chains(table: pa.Table) -> Iterator[tuple[str, Answer[OptionChain]]]:
    for r in _rows(table):
        chain = None
        if r["error"] is None:
            chain = OptionChain(
                r["symbol"],
                tuple(r["expirations"] or ()),
                tuple(float(k) for k in r["strikes"] or ()),
                int(r["multiplier"] if r["multiplier"] is not None else 100),
                r["exchange"] or "SMART",
                r["trading_class"] or "",
            )
        yield r["symbol"], _answer(r, chain)


def _option_quotes(table: pa.Table) -> Iterator[tuple[OptionKey, Answer[OptionQuote]]]:
    for r in _rows(table):
        key = (r["symbol"], r["expiry"], float(r["strike"]), r["right"])
        quote = None
        if r["error"] is None and r["answered"]:
            contract = OptionContract(
                r["symbol"],
                r["expiry"],
                float(r["strike"]),
                Right(r["right"]),
                int(r["multiplier"] if r["multiplier"] is not None else 100),
                r["exchange"] or "SMART",
                r["trading_class"] or "",
            )
            values = {f: _f(r[f]) for f in OPTION_FIELDS}
            quote = OptionQuote(contract, **values, ts=_f(r["quote_ts"]))
        yield key, _answer(r, quote)


def _hours(
    table: pa.Table,
) -> tuple[list[tuple[CloseKey, Answer[float]]], list[tuple[str, Answer[TradingHours]]]]:
    closes: list[tuple[CloseKey, Answer[float]]] = []
    hours: list[tuple[str, Answer[TradingHours]]] = []
    for r in _rows(table):
        if r["kind"] == fmt.HOURS_CLOSE:
            close = None if r["close"] is None else float(r["close"])
            closes.append(((r["symbol"], r["day"]), _answer(r, close)))
        elif r["kind"] == fmt.HOURS_REGULAR:
            hours.append((r["symbol"], _answer(r, _trading_hours(r))))
    return closes, hours


def _accounts(table: pa.Table) -> Iterator[Answer[AccountSnapshot]]:
    """Broker.account() answers, once the format has a kind of them (``account``: the
    AccountSnapshot's fields as columns); without it the replay models the account."""
    names = [f.name for f in fields(AccountSnapshot)]
    for r in _rows(table):
        known = {n: r[n] for n in names if r.get(n) is not None}
        value = AccountSnapshot(**known) if r.get("error") is None and "account" in known else None
        yield Answer(float(r["ts"]), value, r.get("error"))


def _trading_hours(r: Row) -> TradingHours | None:
    """The venue's hours; None when it said nothing (the four columns null)."""
    if r["session_start"] is None or r["zone"] is None:
        return None
    sessions = tuple(zip(r["session_start"], r["session_end"] or (), strict=True))
    days = frozenset(date.fromisoformat(d) for d in r["days"] or ())
    return TradingHours(sessions, days, ZoneInfo(r["zone"]))
