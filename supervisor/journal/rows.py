"""Row <-> record conversion for the journal: JSON columns, NaN, contracts, positions."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from typing import Any

from common.messages import OptionContract, Right
from supervisor.journal.records import EXIT_REASONS, STATUSES, Position


class JournalError(Exception):
    """The journal file cannot be used: not a database, or written by a newer schema."""


def json_ready(x: Any) -> Any:
    """JSON-ready: tuples to lists, non-finite floats to None (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    return x


def to_json(x: Any) -> str:
    return json.dumps(json_ready(x), allow_nan=False)


def nan_if_null(x: float | None) -> float:
    # SQLite stores NaN as NULL; fields that are plain floats get their NaN back
    return math.nan if x is None else float(x)


def contract_values(c: OptionContract) -> tuple[Any, ...]:
    return (c.symbol, c.expiry, c.strike, c.right.value, c.multiplier, c.exchange, c.trading_class)


def contract_from(row: sqlite3.Row) -> OptionContract:
    return OptionContract(
        row["contract_symbol"],
        row["expiry"],
        row["strike"],
        Right(row["option_right"]),
        row["multiplier"],
        row["exchange"],
        row["trading_class"],
    )


def position_from(row: sqlite3.Row) -> Position:
    status, reason = row["status"], row["exit_reason"]
    if status not in STATUSES or (reason is not None and reason not in EXIT_REASONS):
        raise JournalError(f"position {row['intent_id']}: unknown status {status!r}/{reason!r}")
    return Position(
        row["intent_id"],
        row["symbol"],
        contract_from(row),
        row["quantity"],
        nan_if_null(row["entry_limit"]),
        nan_if_null(row["take_profit"]),
        nan_if_null(row["stop_loss"]),
        status,
        row["opened_ts"],
        row["entry_price"],
        row["filled_ts"],
        row["mark"],
        row["exit_price"],
        row["closed_ts"],
        reason,
        row["commission"],
        row["exited"],
        row["exit_commission"],
    )
