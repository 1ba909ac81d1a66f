"""The crash-safe journal: one SQLite file (stdlib sqlite3, WAL) written by the supervisor only.

    supervisor --record_*/save_*--> Journal --autocommit--> var/journal.sqlite3 (+ -wal)
    restart    <--next_cycle_id, day_state, sent_intents, orders_count, open_positions--

Every call is its own transaction and has committed when it returns: a SIGKILL right after
``record_intent`` leaves the intent in the file. Durability against power loss is paid for
only where money is at stake: the connection runs ``synchronous=NORMAL`` (a commit is safe
from a process crash; the WAL is fsynced at checkpoints), and the writes that must survive an
OS crash too — intents, risk decisions, orders, what-if results, fills, positions, day state,
alerts — switch to ``synchronous=FULL`` for their commit (one WAL fsync, which also covers every
NORMAL commit before it). Signals and cycles, hundreds per cycle and rebuilt by the next cycle,
skip the fsync so the event loop is not blocked on the disk for each symbol.

Times are epoch seconds (REAL); days are the exchange's 'YYYY-MM-DD', given by the caller.
Schema changes are appended to ``MIGRATIONS``, never edited; ``PRAGMA user_version`` says how
many were applied, and a file written by newer code is refused instead of misread.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.messages import OptionContract, OrderIntent, Right, Signal
from supervisor.trading.paper import ACTIVE, EXIT_REASONS, STATUSES, Position
from supervisor.trading.risk import RiskDecision

_CONTRACT = "contract_symbol, expiry, strike, option_right, multiplier, exchange, trading_class"
_CONTRACT_DDL = """contract_symbol TEXT NOT NULL, expiry TEXT NOT NULL, strike REAL NOT NULL,
    option_right TEXT NOT NULL, multiplier INTEGER NOT NULL, exchange TEXT NOT NULL,
    trading_class TEXT NOT NULL"""

MIGRATIONS: tuple[str, ...] = (
    f"""
CREATE TABLE cycles (cycle_id INTEGER PRIMARY KEY, day TEXT NOT NULL, started_ts REAL NOT NULL,
    ended_ts REAL, ok INTEGER, failed INTEGER, seconds REAL);
CREATE INDEX cycles_day ON cycles (day);
CREATE TABLE signals (id INTEGER PRIMARY KEY, cycle_id INTEGER NOT NULL, day TEXT NOT NULL,
    symbol TEXT NOT NULL, signal TEXT NOT NULL, confidence REAL, reasons TEXT NOT NULL,
    skipped TEXT, error TEXT);
CREATE INDEX signals_day ON signals (day);
CREATE TABLE intents (intent_id TEXT PRIMARY KEY, day TEXT NOT NULL, cycle_id INTEGER NOT NULL,
    symbol TEXT NOT NULL, {_CONTRACT_DDL}, signal TEXT NOT NULL, entry_limit REAL,
    take_profit REAL, stop_loss REAL, premium REAL, confidence REAL, reasons TEXT NOT NULL,
    bid REAL, ask REAL, quote_ts REAL);
CREATE INDEX intents_day ON intents (day);
CREATE TABLE decisions (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL, day TEXT NOT NULL,
    ts REAL NOT NULL, accepted INTEGER NOT NULL, quantity INTEGER NOT NULL, rule TEXT NOT NULL,
    reason TEXT NOT NULL, values_json TEXT NOT NULL);
CREATE INDEX decisions_day ON decisions (day, accepted);
CREATE TABLE orders (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL, mode TEXT NOT NULL,
    status TEXT NOT NULL, quantity INTEGER NOT NULL, broker_order_id INTEGER,
    details TEXT NOT NULL, created_ts REAL NOT NULL, updated_ts REAL NOT NULL);
CREATE INDEX orders_intent ON orders (intent_id);
CREATE INDEX orders_broker ON orders (broker_order_id);
CREATE TABLE whatifs (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL,
    init_margin_change REAL, maint_margin_change REAL, commission REAL, ts REAL NOT NULL);
CREATE TABLE fills (id INTEGER PRIMARY KEY, intent_id TEXT NOT NULL, side TEXT NOT NULL,
    quantity INTEGER NOT NULL, price REAL NOT NULL, commission REAL, exec_id TEXT UNIQUE,
    ts REAL NOT NULL);
CREATE TABLE positions (intent_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, {_CONTRACT_DDL},
    quantity INTEGER NOT NULL, entry_limit REAL, take_profit REAL, stop_loss REAL,
    status TEXT NOT NULL, opened_ts REAL NOT NULL, entry_price REAL, filled_ts REAL, mark REAL,
    exit_price REAL, closed_ts REAL, exit_reason TEXT, opened_day TEXT NOT NULL,
    closed_day TEXT);
CREATE INDEX positions_status ON positions (status);
CREATE TABLE day_state (day TEXT PRIMARY KEY, start_equity REAL NOT NULL,
    halted INTEGER NOT NULL, halted_reason TEXT NOT NULL, halted_ts REAL);
CREATE TABLE alerts (id INTEGER PRIMARY KEY, day TEXT NOT NULL, kind TEXT NOT NULL, key TEXT,
    text TEXT NOT NULL, ts REAL NOT NULL, UNIQUE (day, kind, key));
""",
)
SCHEMA_VERSION = len(MIGRATIONS)  # 1

_POSITION_COLS = (f"intent_id, symbol, {_CONTRACT}, quantity, entry_limit, take_profit, "
                  "stop_loss, status, opened_ts, entry_price, filled_ts, mark, exit_price, "
                  "closed_ts, exit_reason")


class JournalError(Exception):
    """The journal file cannot be used: not a database, or written by a newer schema."""


@dataclass(frozen=True)
class DayState:
    """What must survive a restart within a trading day: start equity and the kill switch."""

    day: str
    start_equity: float
    halted: bool = False
    halted_reason: str = ""
    halted_ts: float | None = None


def json_ready(x: Any) -> Any:
    """JSON-ready: tuples to lists, non-finite floats to None (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    return x


def _json(x: Any) -> str:
    return json.dumps(json_ready(x), allow_nan=False)


def _nan(x: float | None) -> float:
    # SQLite stores NaN as NULL; fields that are plain floats get their NaN back
    return math.nan if x is None else float(x)


def _contract_values(c: OptionContract) -> tuple[Any, ...]:
    return (c.symbol, c.expiry, c.strike, c.right.value, c.multiplier, c.exchange,
            c.trading_class)


def _contract(row: sqlite3.Row) -> OptionContract:
    return OptionContract(row["contract_symbol"], row["expiry"], row["strike"],
                          Right(row["option_right"]), row["multiplier"], row["exchange"],
                          row["trading_class"])


def _position(row: sqlite3.Row) -> Position:
    status, reason = row["status"], row["exit_reason"]
    if status not in STATUSES or (reason is not None and reason not in EXIT_REASONS):
        raise JournalError(f"position {row['intent_id']}: unknown status {status!r}/{reason!r}")
    return Position(row["intent_id"], row["symbol"], _contract(row), row["quantity"],
                    _nan(row["entry_limit"]), _nan(row["take_profit"]), _nan(row["stop_loss"]),
                    status, row["opened_ts"], row["entry_price"], row["filled_ts"], row["mark"],
                    row["exit_price"], row["closed_ts"], reason)


class Journal:
    """The supervisor's journal. Not thread-safe: one writer, on the thread that opened it."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                # a report may read while the bot writes: WAL lets it, without a second writer
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                           isolation_level=None, timeout=5.0)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from exc
        except JournalError:
            self._db.close()
            raise

    def _open(self, readonly: bool) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(f"{self.path}: schema version {version} is newer than this "
                               f"code's {SCHEMA_VERSION}; upgrade the bot or use another path")
        if readonly:
            if version != SCHEMA_VERSION:
                raise JournalError(f"{self.path}: schema version {version}, expected "
                                   f"{SCHEMA_VERSION}; open it read-write once to migrate")
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # user_version lives in the file header, so it commits atomically with the script
            try:
                self._db.executescript(f"BEGIN IMMEDIATE;\n{script}\n"
                                       f"PRAGMA user_version = {number};\nCOMMIT;")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, durable: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on exit; ``durable`` fsyncs it (synchronous=FULL)."""
        if durable:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, params).fetchone()[0]

    # --- cycles and signals ------------------------------------------------------------------

    def next_cycle_id(self) -> int:
        """One more than any cycle ever journaled: ids keep growing across restarts."""
        return int(self._one("SELECT COALESCE(MAX(cycle_id), 0) + 1 FROM cycles"))

    def start_cycle(self, cycle_id: int, day: str, ts: float) -> None:
        with self._tx(False) as db:
            db.execute("INSERT INTO cycles (cycle_id, day, started_ts) VALUES (?, ?, ?)",
                       (cycle_id, day, ts))

    def end_cycle(self, cycle_id: int, ts: float, ok: int, failed: int, seconds: float) -> None:
        with self._tx(False) as db:
            db.execute("UPDATE cycles SET ended_ts = ?, ok = ?, failed = ?, seconds = ? "
                       "WHERE cycle_id = ?", (ts, ok, failed, seconds, cycle_id))

    def record_signal(self, cycle_id: int, day: str, symbol: str, signal: str,
                      confidence: float, reasons: Sequence[str], skipped: str | None = None,
                      error: str | None = None) -> None:
        with self._tx(False) as db:
            db.execute("INSERT INTO signals (cycle_id, day, symbol, signal, confidence, reasons,"
                       " skipped, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (cycle_id, day, symbol, str(signal), confidence, _json(list(reasons)),
                        skipped, error))

    # --- intents, decisions, orders ------------------------------------------------------------

    def record_intent(self, intent: OrderIntent, day: str) -> bool:
        """Journal an intent before it is executed; False (nothing written) if already there."""
        i = intent
        with self._tx(True) as db:
            cur = db.execute(
                f"INSERT INTO intents (intent_id, day, cycle_id, symbol, {_CONTRACT}, signal, "
                "entry_limit, take_profit, stop_loss, premium, confidence, reasons, bid, ask, "
                "quote_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (intent_id) DO NOTHING",
                (i.intent_id, day, i.cycle_id, i.symbol, *_contract_values(i.contract),
                 i.signal.value, i.entry_limit, i.take_profit, i.stop_loss, i.premium,
                 i.confidence, _json(list(i.reasons)), i.bid, i.ask, i.quote_ts))
            return cur.rowcount == 1

    def load_intent(self, intent_id: str) -> OrderIntent | None:
        row = self._db.execute("SELECT * FROM intents WHERE intent_id = ?",
                               (intent_id,)).fetchone()
        if row is None:
            return None
        return OrderIntent(row["intent_id"], row["cycle_id"], row["symbol"], _contract(row),
                           Signal(row["signal"]), _nan(row["entry_limit"]),
                           _nan(row["take_profit"]), _nan(row["stop_loss"]),
                           _nan(row["premium"]), _nan(row["confidence"]),
                           tuple(json.loads(row["reasons"])), _nan(row["bid"]),
                           _nan(row["ask"]), _nan(row["quote_ts"]))

    def record_decision(self, decision: RiskDecision, day: str, ts: float) -> None:
        d = decision
        with self._tx(True) as db:
            db.execute("INSERT INTO decisions (intent_id, day, ts, accepted, quantity, rule, "
                       "reason, values_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (d.intent_id, day, ts, int(d.accepted), d.quantity, d.rule, d.reason,
                        _json(dict(d.values))))

    def sent_intents(self, day: str) -> frozenset[str]:
        """Intent ids of ``day`` with an accepted decision: RiskState.sent_today."""
        rows = self._db.execute("SELECT DISTINCT intent_id FROM decisions "
                                "WHERE day = ? AND accepted = 1", (day,))
        return frozenset(r[0] for r in rows)

    def orders_count(self, day: str) -> int:
        """Accepted decisions of ``day``: RiskState.orders_today."""
        return int(self._one("SELECT COUNT(*) FROM decisions WHERE day = ? AND accepted = 1",
                             (day,)))

    def record_order(self, intent_id: str, mode: str, status: str, quantity: int, ts: float,
                     broker_order_id: int | None = None,
                     details: Mapping[str, Any] | None = None) -> int:
        """A new order row (dry-run, what-if or live); returns its row id for update_order."""
        with self._tx(True) as db:
            cur = db.execute("INSERT INTO orders (intent_id, mode, status, quantity, "
                             "broker_order_id, details, created_ts, updated_ts) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (intent_id, mode, status, quantity, broker_order_id,
                              _json(details or {}), ts, ts))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def update_order(self, row_id: int, status: str, ts: float,
                     details: Mapping[str, Any] | None = None,
                     broker_order_id: int | None = None) -> bool:
        """New status; ``details`` merged into the stored ones; False if no such row."""
        return self._update_order("id = ?", row_id, status, ts, details, broker_order_id)

    def update_order_by_broker_id(self, broker_order_id: int, status: str, ts: float,
                                  details: Mapping[str, Any] | None = None) -> bool:
        """As update_order, for the order IBKR knows as ``broker_order_id`` (latest row)."""
        return self._update_order("broker_order_id = ?", broker_order_id, status, ts, details,
                                  None)

    def _update_order(self, where: str, key: int, status: str, ts: float,
                      details: Mapping[str, Any] | None, broker_order_id: int | None) -> bool:
        with self._tx(True) as db:
            row = db.execute(f"SELECT id, details, broker_order_id FROM orders WHERE {where} "
                             "ORDER BY id DESC LIMIT 1", (key,)).fetchone()
            if row is None:
                return False
            merged = {**json.loads(row["details"]), **json_ready(details or {})}
            db.execute("UPDATE orders SET status = ?, updated_ts = ?, details = ?, "
                       "broker_order_id = ? WHERE id = ?",
                       (status, ts, _json(merged),
                        row["broker_order_id"] if broker_order_id is None else broker_order_id,
                        row["id"]))
            return True

    def live_orders(self, statuses: Sequence[str] = ("submitted", "working")
                    ) -> list[dict[str, Any]]:
        """Live orders still in one of ``statuses``: what the live lifecycle watches."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._db.execute(
            f"SELECT id, intent_id, status, quantity, broker_order_id, created_ts FROM orders "
            f"WHERE mode = 'live' AND status IN ({marks}) ORDER BY id", tuple(statuses))
        return [dict(row) for row in rows]

    def record_whatif(self, intent_id: str, init_margin_change: float,
                      maint_margin_change: float, commission: float, ts: float) -> None:
        with self._tx(True) as db:
            db.execute("INSERT INTO whatifs (intent_id, init_margin_change, maint_margin_change,"
                       " commission, ts) VALUES (?, ?, ?, ?, ?)",
                       (intent_id, init_margin_change, maint_margin_change, commission, ts))

    def record_fill(self, intent_id: str, side: str, quantity: int, price: float, ts: float,
                    commission: float | None = None, exec_id: str | None = None) -> bool:
        """False when ``exec_id`` is already journaled (IBKR replays executions on reconnect)."""
        with self._tx(True) as db:
            cur = db.execute("INSERT INTO fills (intent_id, side, quantity, price, commission, "
                             "exec_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
                             "ON CONFLICT (exec_id) DO NOTHING",
                             (intent_id, side, quantity, price, commission, exec_id, ts))
            return cur.rowcount == 1

    # --- positions and the day's state ---------------------------------------------------------

    def save_position(self, p: Position, day: str) -> None:
        """Insert or update by intent id; ``day`` (today) dates the opening and the closing."""
        closed_day = None if p.active else day
        with self._tx(True) as db:
            db.execute(
                f"INSERT INTO positions ({_POSITION_COLS}, opened_day, closed_day) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (intent_id) DO UPDATE SET status = excluded.status, "
                "quantity = excluded.quantity, entry_price = excluded.entry_price, "
                "filled_ts = excluded.filled_ts, mark = excluded.mark, "
                "exit_price = excluded.exit_price, closed_ts = excluded.closed_ts, "
                "exit_reason = excluded.exit_reason, "
                # the first save that saw it closed dates the closing; re-saves keep that day
                "closed_day = CASE WHEN excluded.closed_day IS NULL THEN NULL "
                "ELSE COALESCE(positions.closed_day, excluded.closed_day) END",
                (p.intent_id, p.symbol, *_contract_values(p.contract), p.quantity,
                 p.entry_limit, p.take_profit, p.stop_loss, p.status, p.opened_ts,
                 p.entry_price, p.filled_ts, p.mark, p.exit_price, p.closed_ts, p.exit_reason,
                 day, closed_day))

    def open_positions(self) -> list[Position]:
        """Every position not yet closed (pending entries included), oldest first."""
        marks = ", ".join("?" * len(ACTIVE))
        rows = self._db.execute(f"SELECT * FROM positions WHERE status IN ({marks}) "
                                "ORDER BY opened_ts, intent_id", ACTIVE)
        return [_position(r) for r in rows]

    def positions(self, day: str) -> list[Position]:
        """Positions opened or closed on ``day``, and those opened by then and still open."""
        return [p for p, _, _ in self._day_positions(day)]

    def _day_positions(self, day: str) -> list[tuple[Position, str, str | None]]:
        """(position, opened_day, closed_day) for ``positions``."""
        marks = ", ".join("?" * len(ACTIVE))
        rows = self._db.execute(
            "SELECT * FROM positions WHERE opened_day = ? OR closed_day = ? "
            f"OR (status IN ({marks}) AND opened_day <= ?) ORDER BY opened_ts, intent_id",
            (day, day, *ACTIVE, day))
        return [(_position(r), r["opened_day"], r["closed_day"]) for r in rows]

    def day_state(self, day: str) -> DayState | None:
        row = self._db.execute("SELECT * FROM day_state WHERE day = ?", (day,)).fetchone()
        if row is None:
            return None
        return DayState(row["day"], row["start_equity"], bool(row["halted"]),
                        row["halted_reason"], row["halted_ts"])

    def save_day_state(self, state: DayState) -> None:
        s = state
        with self._tx(True) as db:
            db.execute("INSERT INTO day_state (day, start_equity, halted, halted_reason, "
                       "halted_ts) VALUES (?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET "
                       "start_equity = excluded.start_equity, halted = excluded.halted, "
                       "halted_reason = excluded.halted_reason, halted_ts = excluded.halted_ts",
                       (s.day, s.start_equity, int(s.halted), s.halted_reason, s.halted_ts))

    # --- alerts --------------------------------------------------------------------------------

    def record_alert(self, day: str, kind: str, text: str, ts: float) -> bool:
        """Always journaled (no key: never deduplicated); True."""
        with self._tx(True) as db:
            db.execute("INSERT INTO alerts (day, kind, key, text, ts) VALUES (?, ?, NULL, ?, ?)",
                       (day, kind, text, ts))
        return True

    def record_alert_once(self, day: str, kind: str, key: str, text: str, ts: float) -> bool:
        """True the first time (day, kind, key) is seen, across restarts; then False."""
        with self._tx(True) as db:
            cur = db.execute("INSERT INTO alerts (day, kind, key, text, ts) VALUES "
                             "(?, ?, ?, ?, ?) ON CONFLICT (day, kind, key) DO NOTHING",
                             (day, kind, key, text, ts))
            return cur.rowcount == 1

    # --- the day report's numbers --------------------------------------------------------------

    def latest_day(self) -> str | None:
        """The most recent day with a cycle, or None for an empty journal."""
        day = self._one("SELECT MAX(day) FROM cycles")
        return str(day) if day is not None else None

    def day_summary(self, day: str) -> dict[str, Any]:
        """Everything supervisor.commands.report renders for ``day``: plain JSON-ready values only."""
        q = self._db.execute
        c = q("SELECT COUNT(*) n, MIN(started_ts) first, MAX(started_ts) last, "
              "SUM(ended_ts IS NULL) unfinished, SUM(ok) ok, SUM(failed) failed "
              "FROM cycles WHERE day = ?", (day,)).fetchone()
        failed = q("SELECT symbol, COUNT(*) FROM signals WHERE day = ? AND error IS NOT NULL "
                   "GROUP BY symbol ORDER BY symbol", (day,)).fetchall()
        kinds = q("SELECT signal, COUNT(*) FROM signals WHERE day = ? AND error IS NULL "
                  "GROUP BY signal ORDER BY signal", (day,)).fetchall()
        skipped = self._one("SELECT COUNT(*) FROM signals WHERE day = ? AND skipped IS NOT NULL "
                            "AND error IS NULL", (day,))
        decided = q("SELECT accepted, rule, COUNT(*) n, SUM(quantity) qty FROM decisions "
                    "WHERE day = ? GROUP BY accepted, rule ORDER BY rule", (day,)).fetchall()
        orders = q("SELECT o.mode, o.status, COUNT(*) n, SUM(o.quantity) qty FROM orders o "
                   "JOIN intents i USING (intent_id) WHERE i.day = ? GROUP BY o.mode, o.status "
                   "ORDER BY o.mode, o.status", (day,)).fetchall()
        whatifs = q(f"SELECT w.*, i.symbol, {_CONTRACT} FROM whatifs w JOIN intents i "
                    "USING (intent_id) WHERE i.day = ? ORDER BY w.ts, w.id", (day,)).fetchall()
        fills = q("SELECT COUNT(*) n, SUM(f.commission) commission FROM fills f "
                  "JOIN intents i USING (intent_id) WHERE i.day = ?", (day,)).fetchone()
        alerts = q("SELECT kind, key, text, ts FROM alerts WHERE day = ? ORDER BY ts, id",
                   (day,)).fetchall()
        held = self._day_positions(day)
        open_ = [p for p, _, _ in held if p.active]
        # one closed on a later day counts there: its P&L is that day's, not this one's
        closed = [p for p, _, closed_day in held if not p.active and closed_day == day]
        state = self.day_state(day)
        realized = sum(p.realized_pnl for p in closed)
        unrealized = sum(p.unrealized_pnl for p in open_)
        return json_ready({
            "day": day,
            "cycles": {"count": c["n"], "first_ts": c["first"], "last_ts": c["last"],
                       "unfinished": c["unfinished"] or 0, "symbols_ok": c["ok"] or 0,
                       "symbols_failed": c["failed"] or 0,
                       "failed_symbols": {s: n for s, n in failed}},
            "signals": {"by_kind": {k: n for k, n in kinds}, "skipped": skipped,
                        "errors": sum(n for _, n in failed)},
            "intents": {"recorded": self._one("SELECT COUNT(*) FROM intents WHERE day = ?",
                                              (day,))},
            "decisions": {"accepted": sum(r["n"] for r in decided if r["accepted"]),
                          "refused": sum(r["n"] for r in decided if not r["accepted"]),
                          "contracts": sum(r["qty"] for r in decided if r["accepted"]),
                          "refused_by_rule": {r["rule"]: r["n"] for r in decided
                                              if not r["accepted"]}},
            "orders": [{"mode": r["mode"], "status": r["status"], "count": r["n"],
                        "quantity": r["qty"]} for r in orders],
            "whatifs": [{"intent_id": r["intent_id"], "contract": _contract(r).key,
                         "init_margin_change": r["init_margin_change"],
                         "maint_margin_change": r["maint_margin_change"],
                         "commission": r["commission"], "ts": r["ts"]} for r in whatifs],
            "fills": {"count": fills["n"], "commission": fills["commission"] or 0.0},
            "positions": {"opened": sum(1 for _, opened_day, _ in held if opened_day == day),
                          "open": [_position_summary(p, p.unrealized_pnl) for p in open_],
                          "closed": [_position_summary(p, p.realized_pnl) for p in closed]},
            "pnl": {"realized": realized, "unrealized": unrealized,
                    "total": realized + unrealized},
            "kill_switch": {"halted": bool(state and state.halted),
                            "reason": state.halted_reason if state else "",
                            "ts": state.halted_ts if state else None,
                            "start_equity": state.start_equity if state else None},
            "alerts": [{"kind": r["kind"], "key": r["key"], "text": r["text"], "ts": r["ts"]}
                       for r in alerts],
        })


def _position_summary(p: Position, pnl: float) -> dict[str, Any]:
    return {"intent_id": p.intent_id, "symbol": p.symbol, "contract": p.contract.key,
            "quantity": p.quantity, "status": p.status, "exit_reason": p.exit_reason,
            "entry_limit": p.entry_limit, "entry_price": p.entry_price, "mark": p.mark,
            "exit_price": p.exit_price, "take_profit": p.take_profit, "stop_loss": p.stop_loss,
            "opened_ts": p.opened_ts, "closed_ts": p.closed_ts, "pnl": pnl}
