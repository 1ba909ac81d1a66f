"""The journal's share rows: stock an exercise of one of our options delivered (live).

    exercise at the expiry's close   -> a row "<intent id>:shares": signed quantity (+ a call
                                        exercised, - a put), cost = the underlying's close the
                                        option was booked on (its intrinsic value), status held
    sale / buy-back fills (orderRef  -> the fills table, and the row's ``closed`` count, average
      "<intent id>:shares")             exit price and commissions, in one transaction; all of
                                        it closed: status closed (exit reason "closed")
    the account no longer holds them -> closed, exit reason "gone" (no price: a sale by hand)
    stock_seen                       -> the account's stock position in an underlying, as last
                                        seen while an option of ours in it was held: what
                                        tells an exercise (trading/live_exercise.py)

A part of ``Journal`` (supervisor/journal/store.py) as ``journal.shares``, given its store
(the connection and the transactions). The order rows of the closing orders are in
``orders`` with mode "shares" (``journal.orders.of_intent(share_id, "shares")``; the live
order lifecycle follows mode "live" only: a closing order is never an entry to cancel).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from supervisor.journal.commits import Store
from supervisor.journal.rows import JournalError

SHARES_SUFFIX = ":shares"
SHARE_COLUMNS = (
    "share_id, intent_id, symbol, quantity, cost, status, opened_ts, mark, closed, "
    "exit_price, commission, exit_reason, closed_ts"
)
ShareStatus = Literal["held", "closed"]
ShareExit = Literal["closed", "gone"]  # closed by our order; gone: not held any more


def shares_id(intent_id: str) -> str:
    return f"{intent_id}{SHARES_SUFFIX}"


@dataclass(frozen=True)
class Shares:
    """Shares of one exercised option of ours, until they are closed."""

    share_id: str  # "<intent id>:shares", also the closing orders' orderRef
    intent_id: str  # the option's
    symbol: str
    quantity: int  # signed: + long (a call exercised), - short (a put exercised)
    cost: float  # per share: the underlying's close on the expiry day
    status: ShareStatus
    opened_ts: float  # the expiry's close
    mark: float | None = None  # the broker's last price for them
    closed: int = 0  # shares closed so far (unsigned)
    exit_price: float | None = None  # their average
    commission: float = 0.0  # paid on the closing fills
    exit_reason: ShareExit | None = None
    closed_ts: float | None = None

    @property
    def side(self) -> int:
        return 1 if self.quantity > 0 else -1

    @property
    def remaining(self) -> int:
        """Shares still held (unsigned)."""
        return 0 if self.status == "closed" else abs(self.quantity) - self.closed

    @property
    def contracts(self) -> int:
        """What they count for in the position caps: 100 shares a contract, rounded up."""
        return math.ceil(self.remaining / 100)

    @property
    def notional(self) -> float:
        """What they count for in the notional limit: shares x their last price."""
        price = self.mark if self.mark is not None and math.isfinite(self.mark) else self.cost
        return self.remaining * price

    @property
    def realized_pnl(self) -> float:
        """(exit - cost) x closed x side less the closing commissions; 0 without a price."""
        if self.exit_price is None or not self.closed:
            return 0.0
        return (self.exit_price - self.cost) * self.closed * self.side - self.commission

    @property
    def unrealized_pnl(self) -> float:
        if self.mark is None or not math.isfinite(self.mark):
            return 0.0
        return (self.mark - self.cost) * self.remaining * self.side


def shares_from(row: sqlite3.Row) -> Shares:
    if row["status"] not in ("held", "closed"):
        raise JournalError(f"shares {row['share_id']}: unknown status {row['status']!r}")
    return Shares(
        row["share_id"],
        row["intent_id"],
        row["symbol"],
        row["quantity"],
        row["cost"],
        row["status"],
        row["opened_ts"],
        row["mark"],
        row["closed"],
        row["exit_price"],
        row["commission"],
        row["exit_reason"],
        row["closed_ts"],
    )


class ShareRows:
    def __init__(self, store: Store) -> None:
        self._store = store

    def open(self, s: Shares, day: str) -> bool:
        """A new row for shares an exercise delivered; False (nothing written) if there."""
        with self._store.tx(True) as db:
            cur = db.execute(
                f"INSERT INTO shares ({SHARE_COLUMNS}, opened_day) VALUES "
                f"({', '.join('?' * 14)}) ON CONFLICT (share_id) DO NOTHING",
                (
                    s.share_id,
                    s.intent_id,
                    s.symbol,
                    s.quantity,
                    s.cost,
                    s.status,
                    s.opened_ts,
                    s.mark,
                    s.closed,
                    s.exit_price,
                    s.commission,
                    s.exit_reason,
                    s.closed_ts,
                    day,
                ),
            )
            return cur.rowcount == 1

    def save(self, s: Shares, day: str) -> None:
        """The row's state now; ``day`` (today) dates a closing."""
        with self._store.tx(True) as db:
            _update(db, s, day)

    def book_fill(
        self,
        s: Shares,
        side: str,
        quantity: int,
        price: float,
        ts: float,
        commission: float,
        exec_id: str,
        day: str,
    ) -> bool:
        """A closing execution and the row it leaves, in one transaction; False (nothing
        written) if booked before."""
        with self._store.tx(True) as db:
            cur = db.execute(
                "INSERT INTO fills (intent_id, side, quantity, price, commission, "
                "exec_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (exec_id) DO NOTHING",
                (s.share_id, side, quantity, price, commission, exec_id, ts),
            )
            if cur.rowcount != 1:
                return False
            _update(db, s, day)
            return True

    def held(self) -> list[Shares]:
        """Every share row not closed yet, oldest first."""
        rows = self._store.db.execute(
            "SELECT * FROM shares WHERE status = 'held' ORDER BY opened_ts, share_id"
        )
        return [shares_from(r) for r in rows]

    def of_day(self, day: str) -> list[Shares]:
        """Rows opened or closed on ``day``, or held at its end."""
        rows = self._store.db.execute(
            "SELECT * FROM shares WHERE opened_day <= ? AND (closed_day IS NULL OR "
            "closed_day >= ?) ORDER BY opened_ts, share_id",
            (day, day),
        )
        return [shares_from(r) for r in rows]

    def stock_seen(self, symbol: str) -> float | None:
        row = self._store.db.execute(
            "SELECT quantity FROM stock_seen WHERE symbol = ?", (symbol,)
        ).fetchone()
        return None if row is None else float(row[0])

    def see_stock(self, seen: Mapping[str, float], ts: float) -> None:
        """The account's stock position per symbol, written where it changed."""
        changed = {s: q for s, q in seen.items() if self.stock_seen(s) != q}
        if not changed:
            return
        with self._store.tx(False) as db:
            db.executemany(
                "INSERT INTO stock_seen (symbol, quantity, ts) VALUES (?, ?, ?) "
                "ON CONFLICT (symbol) DO UPDATE SET quantity = excluded.quantity, "
                "ts = excluded.ts",
                [(s, q, ts) for s, q in changed.items()],
            )


def _update(db: sqlite3.Connection, s: Shares, day: str) -> None:
    db.execute(
        "UPDATE shares SET status = ?, mark = ?, closed = ?, exit_price = ?, "
        "commission = ?, exit_reason = ?, closed_ts = ?, closed_day = CASE WHEN ? = "
        "'closed' THEN COALESCE(closed_day, ?) END WHERE share_id = ?",
        (
            s.status,
            s.mark,
            s.closed,
            s.exit_price,
            s.commission,
            s.exit_reason,
            s.closed_ts,
            s.status,
            day,
            s.share_id,
        ),
    )
