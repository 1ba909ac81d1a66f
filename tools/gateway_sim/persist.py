"""``--state-file``: the account's server-side state outlives a restart of the simulator.

IBKR keeps orders, executions and positions on its servers: an IB Gateway restart is only
the local process, and afterwards reqAllOpenOrders, reqExecutions (today's) and
reqCompletedOrders list what they listed before. With a state file the sim does the same::

    every order event (an order message to a client, a position change, a place)
        -> StateFile.save(book): plain JSON, written to a tmp file and renamed into place
           (a SIGKILL leaves the previous or the new state, never half of one); skipped when
           nothing changed since the last write
    start (SimServer.__init__)
        -> StateFile.load(book, now): open orders (ids, permIds, orderRefs, parents, OCA),
           completed orders, positions, the ledger's cash / realized figures, the OCA shares;
           executions only of the current trading day (reqExecutions lists today's)

Saving happens before the message goes out, so a client never sees an order event the file
does not hold. The next order id follows from the orders kept (SimServer.next_order_id);
the permId counter is saved, so no permId is given twice.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tools.gateway_sim.instruments import Instrument, InstrumentBook
from tools.gateway_sim.ledger import _Day
from tools.gateway_sim.orders import Execution, OrderBook, SimOrder
from tools.gateway_sim.positions import Position

log = logging.getLogger("gateway_sim.persist")
VERSION = 1


@dataclass(frozen=True)
class InstrumentKey:
    """What rebuilds an instrument from the sim's own book (its conId follows from it)."""

    sec_type: str
    symbol: str
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    expiry_index: int = -1

    @staticmethod
    def of(inst: Instrument) -> InstrumentKey:
        return InstrumentKey(
            inst.sec_type, inst.symbol, inst.expiry, inst.strike, inst.right, inst.expiry_index
        )

    def build(self, book: InstrumentBook) -> Instrument:
        if self.sec_type != "OPT":
            return book.stocks[self.symbol]
        day = date(int(self.expiry[:4]), int(self.expiry[4:6]), int(self.expiry[6:]))
        return book.option(self.symbol, day, self.strike, self.right, self.expiry_index)


_ORDER_SCALARS = (
    "order_id",
    "client_id",
    "perm_id",
    "status",
    "filled",
    "avg_price",
    "last_price",
    "completed_time",
    "base_qty",
    "commission_paid",
    "placed_ts",
    "day_deadline",
)
_EXEC_SCALARS = (
    "exec_id",
    "shares",
    "price",
    "when",
    "commission",
    "cum_qty",
    "avg_price",
    "ts",
    "realized",
)


def snapshot(book: OrderBook) -> dict[str, Any]:
    """The state as plain JSON data."""
    ledger = book.ledger
    return {
        "version": VERSION,
        "next_perm_id": book.next_perm_id,
        "what_if_ids": sorted(list(k) for k in book.what_if_ids),
        "orders": [
            {
                **{k: getattr(o, k) for k in _ORDER_SCALARS},
                "inst": asdict(InstrumentKey.of(o.inst)),
                "fields": o.fields,
            }
            for o in book.orders.values()
        ],
        "executions": [
            {
                **{k: getattr(e, k) for k in _EXEC_SCALARS},
                "order": [e.order.client_id, e.order.order_id],
            }
            for e in book.executions
        ],
        "positions": [
            {
                "inst": asdict(InstrumentKey.of(p.inst)),
                "quantity": p.quantity,
                "avg_cost": p.avg_cost,
                "realized_pnl": p.realized_pnl,
            }
            for p in book.positions.values()
        ],
        "oca_shares": dict(book.oca.executed_share),
        "ledger": {
            "cash": ledger.cash,
            "realized_total": ledger.realized_total,
            "day_start_ts": ledger.day_start_ts,
            "day_net_liquidation": ledger.day_net_liquidation,
            "peak_long_options": dict(ledger.peak_long_options),
            "days": {str(c): asdict(d) for c, d in ledger._days.items()},
        },
    }


def restore(book: OrderBook, data: dict[str, Any], now: float) -> None:
    """Put a snapshot back into a fresh book (the scenario's positions are replaced)."""
    instruments = book.market.book
    for raw in data["orders"]:
        inst = InstrumentKey(**raw["inst"]).build(instruments)
        order = SimOrder(
            inst=inst, fields=dict(raw["fields"]), **{k: raw[k] for k in _ORDER_SCALARS}
        )
        book.orders[(order.client_id, order.order_id)] = order
    today = book.market.clock.trading_day_start(now)
    for raw in data["executions"]:
        owner = book.orders.get((raw["order"][0], raw["order"][1]))
        if owner is not None and raw["ts"] >= today:
            book.executions.append(Execution(order=owner, **{k: raw[k] for k in _EXEC_SCALARS}))
    book.positions.clear()  # the ledger holds the same dict
    for raw in data["positions"]:
        inst = InstrumentKey(**raw["inst"]).build(instruments)
        book.positions[inst.con_id] = Position(
            inst, raw["quantity"], raw["avg_cost"], raw["realized_pnl"]
        )
    book.next_perm_id = max(book.next_perm_id, int(data["next_perm_id"]))
    book.what_if_ids.update((int(c), int(o)) for c, o in data["what_if_ids"])
    book.oca.executed_share.update(data["oca_shares"])
    saved, ledger = data["ledger"], book.ledger
    ledger.cash, ledger.realized_total = saved["cash"], saved["realized_total"]
    ledger.day_start_ts = saved["day_start_ts"]
    ledger.day_net_liquidation = saved["day_net_liquidation"]
    ledger.peak_long_options.update(saved["peak_long_options"])
    ledger._days = {int(c): _Day(**d) for c, d in saved["days"].items()}


@dataclass
class StateFile:
    path: Path
    _last: str = field(default="", repr=False)

    def load(self, book: OrderBook, now: float) -> bool:
        """Restore the file's state if there is one; False: none (a first start)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        data = json.loads(text)
        if data.get("version") != VERSION:
            raise ValueError(
                f"state file {self.path}: version {data.get('version')!r}, expected {VERSION}"
            )
        restore(book, data, now)
        self._last = text
        log.info(
            "state restored from %s: %d orders, %d executions today",
            self.path,
            len(book.orders),
            len(book.executions),
        )
        return True

    def save(self, book: OrderBook) -> None:
        text = json.dumps(snapshot(book), sort_keys=True)
        if text == self._last:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("cannot write the state file %s: %s", self.path, exc)
            return
        self._last = text
