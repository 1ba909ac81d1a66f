"""The day report's numbers: one query per section over the journal, as the typed, JSON-ready
``DaySummary`` (summary_types.py)."""

from __future__ import annotations

import math
import sqlite3

from common.calendar import trading_day
from supervisor.journal.records import DayState, Position
from supervisor.journal.rows import contract_from
from supervisor.journal.schema import CONTRACT_COLUMNS
from supervisor.journal.shares import Shares, shares_from
from supervisor.journal.summary_types import (
    Alert,
    BrokerFigures,
    Cycles,
    DaySummary,
    Decisions,
    Fills,
    KillSwitch,
    OrderCount,
    Pnl,
    PositionLine,
    Positions,
    ShareLine,
    Signals,
    WhatIf,
    num,
)

DayPositions = list[tuple[Position, str, "str | None"]]


def _count(db: sqlite3.Connection, sql: str, params: tuple[str, ...]) -> int:
    return int(db.execute(sql, params).fetchone()[0])


def day_summary(
    db: sqlite3.Connection, day: str, held: DayPositions, state: DayState | None
) -> DaySummary:
    """Everything the report renders for ``day``; ``held`` are the day's positions with their
    opening and closing days, ``state`` its kill-switch state."""
    cycles, signals = _cycles_and_signals(db, day)
    orders, whatifs, fills = _orders(db, day)
    shares = _shares(db, day)
    positions, pnl = _positions(held, day, _sides(db, held), shares)
    alerts: list[Alert] = [
        {"kind": r["kind"], "key": r["key"], "text": r["text"], "ts": r["ts"]}
        for r in db.execute(
            "SELECT kind, key, text, ts FROM alerts WHERE day = ? ORDER BY ts, id", (day,)
        )
    ]
    return {
        "day": day,
        "cycles": cycles,
        "signals": signals,
        "intents": {"recorded": _count(db, "SELECT COUNT(*) FROM intents WHERE day = ?", (day,))},
        "decisions": _decisions(db, day),
        "orders": orders,
        "whatifs": whatifs,
        "fills": fills,
        "shares": [_share_summary(s, closed_day, day) for s, closed_day in shares],
        "positions": positions,
        "pnl": pnl,
        "kill_switch": _kill_switch(state),
        "alerts": alerts,
        "broker": _broker(db, day),
    }


def _kill_switch(state: DayState | None) -> KillSwitch:
    return {
        "halted": bool(state and state.halted),
        "reason": state.halted_reason if state else "",
        "ts": state.halted_ts if state else None,
        "start_equity": num(state.start_equity) if state else None,
    }


def _broker(db: sqlite3.Connection, day: str) -> BrokerFigures | None:
    """The broker's own figures for the account that day (live runs), the latest seen."""
    row = db.execute(
        "SELECT ts, daily, realized, unrealized, net_liquidation FROM broker_pnl WHERE day = ?",
        (day,),
    ).fetchone()
    if row is None:
        return None
    return {
        "ts": row["ts"],
        "daily": num(row["daily"]),
        "realized": num(row["realized"]),
        "unrealized": num(row["unrealized"]),
        "net_liquidation": num(row["net_liquidation"]),
    }


def _cycles_and_signals(db: sqlite3.Connection, day: str) -> tuple[Cycles, Signals]:
    q = db.execute
    c = q(
        "SELECT COUNT(*) n, MIN(started_ts) first, MAX(started_ts) last, "
        "SUM(ended_ts IS NULL) unfinished, SUM(ok) ok, SUM(failed) failed "
        "FROM cycles WHERE day = ?",
        (day,),
    ).fetchone()
    failed = q(
        "SELECT symbol, COUNT(*) FROM signals WHERE day = ? AND error IS NOT NULL "
        "GROUP BY symbol ORDER BY symbol",
        (day,),
    ).fetchall()
    kinds = q(
        "SELECT signal, COUNT(*) FROM signals WHERE day = ? AND error IS NULL "
        "GROUP BY signal ORDER BY signal",
        (day,),
    ).fetchall()
    skipped = _count(
        db,
        "SELECT COUNT(*) FROM signals WHERE day = ? AND skipped IS NOT NULL AND error IS NULL",
        (day,),
    )
    cycles: Cycles = {
        "count": c["n"],
        "first_ts": c["first"],
        "last_ts": c["last"],
        "unfinished": c["unfinished"] or 0,
        "symbols_ok": c["ok"] or 0,
        "symbols_failed": c["failed"] or 0,
        "failed_symbols": {s: n for s, n in failed},
    }
    signals: Signals = {
        "by_kind": {k: n for k, n in kinds},
        "skipped": skipped,
        "errors": sum(n for _, n in failed),
    }
    return cycles, signals


def _decisions(db: sqlite3.Connection, day: str) -> Decisions:
    decided = db.execute(
        "SELECT accepted, rule, COUNT(*) n, SUM(quantity) qty FROM decisions "
        "WHERE day = ? GROUP BY accepted, rule ORDER BY rule",
        (day,),
    ).fetchall()
    return {
        "accepted": sum(r["n"] for r in decided if r["accepted"]),
        "refused": sum(r["n"] for r in decided if not r["accepted"]),
        "contracts": sum(r["qty"] for r in decided if r["accepted"]),
        "refused_by_rule": {r["rule"]: r["n"] for r in decided if not r["accepted"]},
    }


def _orders(db: sqlite3.Connection, day: str) -> tuple[list[OrderCount], list[WhatIf], Fills]:
    q = db.execute
    orders = q(
        "SELECT o.mode, o.status, COUNT(*) n, SUM(o.quantity) qty FROM orders o "
        "JOIN intents i USING (intent_id) WHERE i.day = ? GROUP BY o.mode, o.status "
        "ORDER BY o.mode, o.status",
        (day,),
    ).fetchall()
    whatifs = q(
        f"SELECT w.*, i.symbol, {CONTRACT_COLUMNS} FROM whatifs w JOIN intents i "
        "USING (intent_id) WHERE i.day = ? ORDER BY w.ts, w.id",
        (day,),
    ).fetchall()
    fills = q(
        "SELECT COUNT(*) n, SUM(f.commission) commission FROM fills f "
        "JOIN intents i USING (intent_id) WHERE i.day = ?",
        (day,),
    ).fetchone()
    counts: list[OrderCount] = [
        {"mode": r["mode"], "status": r["status"], "count": r["n"], "quantity": r["qty"]}
        for r in orders
    ]
    checked: list[WhatIf] = [
        {
            "intent_id": r["intent_id"],
            "contract": contract_from(r).key,
            "init_margin_change": num(r["init_margin_change"]),
            "maint_margin_change": num(r["maint_margin_change"]),
            "commission": num(r["commission"]),
            "ts": r["ts"],
        }
        for r in whatifs
    ]
    return counts, checked, {"count": fills["n"], "commission": fills["commission"] or 0.0}


def _sides(db: sqlite3.Connection, held: DayPositions) -> dict[str, tuple[str, str, float | None]]:
    """Intent id -> (action, signal, confidence): the order's side beside the signal's."""
    ids = [p.intent_id for p, _, _ in held]
    if not ids:
        return {}
    rows = db.execute(
        f"SELECT intent_id, action, signal, confidence FROM intents WHERE "
        f"intent_id IN ({', '.join('?' * len(ids))})",
        ids,
    ).fetchall()
    return {r["intent_id"]: (r["action"], r["signal"], r["confidence"]) for r in rows}


def _shares(db: sqlite3.Connection, day: str) -> list[tuple[Shares, str | None]]:
    """Exercised shares (live) opened by the day's end and not closed before it."""
    rows = db.execute(
        "SELECT * FROM shares WHERE opened_day <= ? AND (closed_day IS NULL OR "
        "closed_day >= ?) ORDER BY opened_ts, share_id",
        (day, day),
    ).fetchall()
    return [(shares_from(r), r["closed_day"]) for r in rows]


def _positions(
    held: DayPositions,
    day: str,
    sides: dict[str, tuple[str, str, float | None]],
    shares: list[tuple[Shares, str | None]],
) -> tuple[Positions, Pnl]:
    open_ = [p for p, _, _ in held if p.active]
    # one closed on a later day counts there: its P&L is that day's, not this one's; it was
    # open at this day's end all the same (its mark then is not kept: no unrealized figure)
    overnight = [
        (p, closed_day)
        for p, _, closed_day in held
        if not p.active
        and closed_day is not None
        and closed_day > day
        and p.filled_ts is not None
        and trading_day(p.filled_ts).isoformat() <= day
    ]
    closed = [p for p, _, closed_day in held if not p.active and closed_day == day]
    # live positions sold in part have realized that part already (as IBKR counts it)
    realized = sum(p.realized_pnl for p in closed) + sum(p.realized_pnl for p in open_ if p.exited)
    unrealized = sum(p.unrealized_pnl for p in open_)
    # exercised shares: realized the day they were closed, unrealized while held
    realized += sum(s.realized_pnl for s, closed_day in shares if closed_day == day)
    unrealized += sum(s.unrealized_pnl for s, closed_day in shares if closed_day is None)
    open_at_end = [_position_summary(p, p.unrealized_pnl, sides) for p in open_]
    for p, later in overnight:
        line = _position_summary(p, math.nan, sides)
        line["closed_day"] = later
        open_at_end.append(line)
    positions: Positions = {
        "opened": sum(1 for _, opened_day, _ in held if opened_day == day),
        "open": open_at_end,
        "closed": [_position_summary(p, p.realized_pnl, sides) for p in closed],
    }
    total = realized + unrealized
    return positions, {
        "realized": num(realized),
        "unrealized": num(unrealized),
        "total": num(total),
    }


def _position_summary(
    p: Position, pnl: float, sides: dict[str, tuple[str, str, float | None]]
) -> PositionLine:
    action, signal, confidence = sides.get(p.intent_id, ("BUY", "", None))
    return {
        "intent_id": p.intent_id,
        "symbol": p.symbol,
        "contract": p.contract.key,
        "action": action,
        "signal": signal,
        "confidence": num(confidence),
        "quantity": p.quantity,
        "held": p.held,
        "exited": p.exited,
        "status": p.status,
        "exit_reason": p.exit_reason,
        "entry_limit": num(p.entry_limit),
        "entry_price": num(p.entry_price),
        "mark": num(p.mark),
        "exit_price": num(p.exit_price),
        "take_profit": num(p.take_profit),
        "stop_loss": num(p.stop_loss),
        "opened_ts": p.opened_ts,
        "closed_ts": p.closed_ts,
        "pnl": num(pnl),
    }


def _share_summary(s: Shares, closed_day: str | None, day: str) -> ShareLine:
    """One row of exercised shares as of ``day``'s end (closed on a later day: held then,
    its P&L that later day's)."""
    later = closed_day is not None and closed_day > day
    return {
        "share_id": s.share_id,
        "intent_id": s.intent_id,
        "symbol": s.symbol,
        "quantity": s.quantity,
        "cost": num(s.cost),
        "held": s.quantity if later else s.side * s.remaining,
        "status": "held" if later else s.status,
        "mark": None if later else num(s.mark),
        "exit_price": num(s.exit_price),
        "exit_reason": s.exit_reason,
        "pnl": None if later else num(s.realized_pnl if closed_day == day else s.unrealized_pnl),
    }
