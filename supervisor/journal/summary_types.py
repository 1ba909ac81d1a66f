"""The day report's numbers as typed records: what ``Journal.day_summary`` returns.

JSON-ready: no NaN (a missing number is None), lists not tuples; ``render_json`` dumps it as
it is, ``render_text`` (supervisor/commands/report.py) reads it by key.
"""

from __future__ import annotations

import math
from typing import NotRequired, TypedDict

from supervisor.journal.control_rows import ControlRow


def num(x: float | None) -> float | None:
    """A figure as JSON holds it: NaN and infinities are None."""
    return x if x is not None and math.isfinite(x) else None


class Cycles(TypedDict):
    count: int
    first_ts: float | None
    last_ts: float | None
    unfinished: int
    symbols_ok: int
    symbols_failed: int
    failed_symbols: dict[str, int]


class Signals(TypedDict):
    by_kind: dict[str, int]
    skipped: int
    errors: int


class Intents(TypedDict):
    recorded: int


class Decisions(TypedDict):
    accepted: int
    refused: int
    contracts: int
    refused_by_rule: dict[str, int]


class OrderCount(TypedDict):
    mode: str
    status: str
    count: int
    quantity: int


class WhatIf(TypedDict):
    intent_id: str
    contract: str
    init_margin_change: float | None
    maint_margin_change: float | None
    commission: float | None
    ts: float


class Fills(TypedDict):
    count: int
    commission: float


class PositionLine(TypedDict):
    intent_id: str
    symbol: str
    contract: str
    action: str
    signal: str
    confidence: float | None
    quantity: int
    held: int
    exited: int | None
    status: str
    exit_reason: str | None
    entry_limit: float | None
    entry_price: float | None
    mark: float | None
    exit_price: float | None
    take_profit: float | None
    stop_loss: float | None
    opened_ts: float
    closed_ts: float | None
    pnl: float | None
    closed_day: NotRequired[str]  # open at the day's end, closed on this later day


class Positions(TypedDict):
    opened: int
    open: list[PositionLine]
    closed: list[PositionLine]


class ShareLine(TypedDict):
    share_id: str
    intent_id: str
    symbol: str
    quantity: int
    cost: float | None
    held: int
    status: str
    mark: float | None
    exit_price: float | None
    exit_reason: str | None
    pnl: float | None


class Pnl(TypedDict):
    realized: float | None
    unrealized: float | None
    total: float | None


class KillSwitch(TypedDict):
    halted: bool
    reason: str
    ts: float | None
    start_equity: float | None


class Alert(TypedDict):
    kind: str
    key: str | None
    text: str
    ts: float


class BrokerFigures(TypedDict):
    ts: float
    daily: float | None
    realized: float | None
    unrealized: float | None
    net_liquidation: float | None


class DaySummary(TypedDict):
    day: str
    cycles: Cycles
    signals: Signals
    intents: Intents
    decisions: Decisions
    orders: list[OrderCount]
    whatifs: list[WhatIf]
    fills: Fills
    shares: list[ShareLine]
    positions: Positions
    pnl: Pnl
    kill_switch: KillSwitch
    alerts: list[Alert]
    broker: BrokerFigures | None
    controls: NotRequired[list[ControlRow]]  # pause, resume, flatten, kill of the day
