"""The day report's numbers: one query per section over the journal, JSON-ready values."""

from __future__ import annotations

import sqlite3
from typing import Any

from common.calendar import trading_day
from supervisor.journal.records import DayState, Position
from supervisor.journal.rows import JsonObject, contract_from, json_object
from supervisor.journal.schema import CONTRACT_COLUMNS
from supervisor.journal.shares import Shares, shares_from

DayPositions = list[tuple[Position, str, "str | None"]]


def _one(db: sqlite3.Connection, sql: str, params: tuple[str, ...]) -> Any:
    return db.execute(sql, params).fetchone()[0]


def day_summary(
    db: sqlite3.Connection, day: str, held: DayPositions, state: DayState | None
) -> JsonObject:
    """Everything the report renders for ``day``; ``held`` are the day's positions with their
    opening and closing days, ``state`` its kill-switch state."""
    alerts = db.execute(
        "SELECT kind, key, text, ts FROM alerts WHERE day = ? ORDER BY ts, id", (day,)
    ).fetchall()
    return json_object(
        {
            "day": day,
            **_cycles_and_signals(db, day),
            **_decisions(db, day),
            **_orders(db, day),
            **_positions(held, day, _sides(db, held), _shares(db, day)),
            "kill_switch": {
                "halted": bool(state and state.halted),
                "reason": state.halted_reason if state else "",
                "ts": state.halted_ts if state else None,
                "start_equity": state.start_equity if state else None,
            },
            "alerts": [
                {"kind": r["kind"], "key": r["key"], "text": r["text"], "ts": r["ts"]}
                for r in alerts
            ],
            "broker": _broker(db, day),
        }
    )


def _broker(db: sqlite3.Connection, day: str) -> dict[str, Any] | None:
    """The broker's own figures for the account that day (live runs), the latest seen."""
    row = db.execute(
        "SELECT ts, daily, realized, unrealized, net_liquidation FROM broker_pnl WHERE day = ?",
        (day,),
    ).fetchone()
    return None if row is None else dict(row)


def _cycles_and_signals(db: sqlite3.Connection, day: str) -> dict[str, Any]:
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
    skipped = _one(
        db,
        "SELECT COUNT(*) FROM signals WHERE day = ? AND skipped IS NOT NULL AND error IS NULL",
        (day,),
    )
    return {
        "cycles": {
            "count": c["n"],
            "first_ts": c["first"],
            "last_ts": c["last"],
            "unfinished": c["unfinished"] or 0,
            "symbols_ok": c["ok"] or 0,
            "symbols_failed": c["failed"] or 0,
            "failed_symbols": {s: n for s, n in failed},
        },
        "signals": {
            "by_kind": {k: n for k, n in kinds},
            "skipped": skipped,
            "errors": sum(n for _, n in failed),
        },
    }


def _decisions(db: sqlite3.Connection, day: str) -> dict[str, Any]:
    decided = db.execute(
        "SELECT accepted, rule, COUNT(*) n, SUM(quantity) qty FROM decisions "
        "WHERE day = ? GROUP BY accepted, rule ORDER BY rule",
        (day,),
    ).fetchall()
    return {
        "intents": {"recorded": _one(db, "SELECT COUNT(*) FROM intents WHERE day = ?", (day,))},
        "decisions": {
            "accepted": sum(r["n"] for r in decided if r["accepted"]),
            "refused": sum(r["n"] for r in decided if not r["accepted"]),
            "contracts": sum(r["qty"] for r in decided if r["accepted"]),
            "refused_by_rule": {r["rule"]: r["n"] for r in decided if not r["accepted"]},
        },
    }


def _orders(db: sqlite3.Connection, day: str) -> dict[str, Any]:
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
    return {
        "orders": [
            {"mode": r["mode"], "status": r["status"], "count": r["n"], "quantity": r["qty"]}
            for r in orders
        ],
        "whatifs": [
            {
                "intent_id": r["intent_id"],
                "contract": contract_from(r).key,
                "init_margin_change": r["init_margin_change"],
                "maint_margin_change": r["maint_margin_change"],
                "commission": r["commission"],
                "ts": r["ts"],
            }
            for r in whatifs
        ],
        "fills": {"count": fills["n"], "commission": fills["commission"] or 0.0},
    }


def _sides(db: sqlite3.Connection, held: DayPositions) -> dict[str, tuple[str, str, float]]:
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
    sides: dict[str, tuple[str, str, float]],
    shares: list[tuple[Shares, str | None]],
) -> dict[str, Any]:
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
    return {
        "shares": [_share_summary(s, closed_day, day) for s, closed_day in shares],
        "positions": {
            "opened": sum(1 for _, opened_day, _ in held if opened_day == day),
            "open": [_position_summary(p, p.unrealized_pnl, sides) for p in open_]
            + [
                {**_position_summary(p, float("nan"), sides), "closed_day": later}
                for p, later in overnight
            ],
            "closed": [_position_summary(p, p.realized_pnl, sides) for p in closed],
        },
        "pnl": {"realized": realized, "unrealized": unrealized, "total": realized + unrealized},
    }


def _position_summary(
    p: Position, pnl: float, sides: dict[str, tuple[str, str, float]]
) -> dict[str, Any]:
    action, signal, confidence = sides.get(p.intent_id, ("BUY", "", float("nan")))
    return {
        "intent_id": p.intent_id,
        "symbol": p.symbol,
        "contract": p.contract.key,
        "action": action,
        "signal": signal,
        "confidence": confidence,
        "quantity": p.quantity,
        "held": p.held,
        "exited": p.exited,
        "status": p.status,
        "exit_reason": p.exit_reason,
        "entry_limit": p.entry_limit,
        "entry_price": p.entry_price,
        "mark": p.mark,
        "exit_price": p.exit_price,
        "take_profit": p.take_profit,
        "stop_loss": p.stop_loss,
        "opened_ts": p.opened_ts,
        "closed_ts": p.closed_ts,
        "pnl": pnl,
    }


def _share_summary(s: Shares, closed_day: str | None, day: str) -> dict[str, Any]:
    """One row of exercised shares as of ``day``'s end (closed on a later day: held then,
    its P&L that later day's)."""
    later = closed_day is not None and closed_day > day
    return {
        "share_id": s.share_id,
        "intent_id": s.intent_id,
        "symbol": s.symbol,
        "quantity": s.quantity,
        "cost": s.cost,
        "held": s.quantity if later else s.side * s.remaining,
        "status": "held" if later else s.status,
        "mark": None if later else s.mark,
        "exit_price": s.exit_price,
        "exit_reason": s.exit_reason,
        "pnl": float("nan")
        if later
        else (s.realized_pnl if closed_day == day else s.unrealized_pnl),
    }
