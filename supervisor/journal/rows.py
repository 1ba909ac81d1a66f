"""Row <-> record conversion for the journal: JSON columns, NaN, contracts, positions."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from typing import TypeAlias

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.journal.records import EXIT_REASONS, STATUSES, Position
from supervisor.journal.schema import POSITION_COLUMNS

# what a JSON column holds (an order's details, a decision's values), decoded
JsonValue: TypeAlias = "None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue]"
JsonObject: TypeAlias = "dict[str, JsonValue]"


class JournalError(Exception):
    """The journal file cannot be used: not a database, or written by a newer schema."""


def json_ready(x: object) -> JsonValue:
    """JSON-ready: tuples to lists, non-finite floats to None (JSON has no NaN); anything
    else that is not JSON (an object) as its text."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    return str(x)


def json_object(x: Mapping[str, object]) -> JsonObject:
    """``json_ready`` of a mapping, typed as one."""
    return {str(k): json_ready(v) for k, v in x.items()}


def to_json(x: object) -> str:
    return json.dumps(json_ready(x), allow_nan=False)


def from_json(text: str | None) -> JsonObject:
    """A JSON object column, decoded ({} when empty)."""
    decoded = json.loads(text or "{}")
    if not isinstance(decoded, dict):
        raise JournalError(f"a JSON column holds {type(decoded).__name__}, not an object")
    return decoded


def nan_if_null(x: float | None) -> float:
    # SQLite stores NaN as NULL; fields that are plain floats get their NaN back
    return math.nan if x is None else float(x)


def contract_values(c: OptionContract) -> tuple[str, str, float, str, int, str, str]:
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


def intent_from(row: sqlite3.Row) -> OrderIntent:
    return OrderIntent(
        row["intent_id"],
        row["cycle_id"],
        row["symbol"],
        contract_from(row),
        Signal(row["signal"]),
        nan_if_null(row["entry_limit"]),
        nan_if_null(row["take_profit"]),
        nan_if_null(row["stop_loss"]),
        nan_if_null(row["premium"]),
        nan_if_null(row["confidence"]),
        tuple(json.loads(row["reasons"])),
        nan_if_null(row["bid"]),
        nan_if_null(row["ask"]),
        nan_if_null(row["quote_ts"]),
        row["action"],
    )


def save_position(db: sqlite3.Connection, p: Position, day: str) -> None:
    closed_day = None if p.active else day
    db.execute(
        f"INSERT INTO positions ({POSITION_COLUMNS}, opened_day, closed_day) VALUES "
        f"({', '.join('?' * 26)}) "
        "ON CONFLICT (intent_id) DO UPDATE SET status = excluded.status, "
        "quantity = excluded.quantity, entry_price = excluded.entry_price, "
        "filled_ts = excluded.filled_ts, mark = excluded.mark, "
        "exit_price = excluded.exit_price, closed_ts = excluded.closed_ts, "
        "exit_reason = excluded.exit_reason, commission = excluded.commission, "
        "exited = excluded.exited, exit_commission = excluded.exit_commission, "
        # the first save that saw it closed dates the closing; re-saves keep that day
        "closed_day = CASE WHEN excluded.closed_day IS NULL THEN NULL "
        "ELSE COALESCE(positions.closed_day, excluded.closed_day) END",
        (
            p.intent_id,
            p.symbol,
            *contract_values(p.contract),
            p.quantity,
            p.entry_limit,
            p.take_profit,
            p.stop_loss,
            p.status,
            p.opened_ts,
            p.entry_price,
            p.filled_ts,
            p.mark,
            p.exit_price,
            p.closed_ts,
            p.exit_reason,
            p.commission,
            p.exited,
            p.exit_commission,
            day,
            closed_day,
        ),
    )
