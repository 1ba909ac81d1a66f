"""Paper order book: records every order, acknowledges, fills against the simulated market.

Orders with ``transmit=0`` are held silently (as TWS does) until an order of the same bracket
is transmitted; bracket children wait (PreSubmitted) until their parent fills, then work;
the first child to fill cancels its siblings (and any order sharing its OCA group). A small
matcher task runs only while orders are working. What-if orders are answered with an
OrderState (margin and commission) and never work.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.codec import FieldValue
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.market import Market
from tools.gateway_sim.order_codec import (
    encode_completed_order,
    encode_open_order,
    is_flag,
    number,
)
from tools.gateway_sim.scenario import Scenario
from tools.gateway_sim.stats import Stats

log = logging.getLogger("gateway_sim.orders")
DONE = frozenset({"Filled", "Cancelled"})
Sender = Callable[[int, list[FieldValue]], None]


@dataclass
class SimOrder:
    order_id: int
    client_id: int
    perm_id: int
    inst: Instrument
    fields: dict[str, str]
    status: str = "Held"  # Held (not transmitted) -> PreSubmitted/Submitted -> Filled/Cancelled
    filled: float = 0.0
    avg_price: float = 0.0
    completed_time: str = ""

    @property
    def quantity(self) -> float:
        return number(self.fields, "totalQuantity") or 0.0

    @property
    def parent_id(self) -> int:
        raw = self.fields.get("parentId", "")
        return int(raw) if raw else 0

    @property
    def action(self) -> str:
        return self.fields.get("action", "").upper()


@dataclass
class Position:
    inst: Instrument
    quantity: float = 0.0
    avg_cost: float = 0.0  # per contract/share including the multiplier, like IB


@dataclass
class Execution:
    exec_id: str
    order: SimOrder
    shares: float
    price: float
    when: str
    commission: float


@dataclass
class OrderBook:
    scenario: Scenario
    market: Market
    stats: Stats
    send: Sender
    on_position: Callable[[Position], None]
    orders: dict[tuple[int, int], SimOrder] = field(default_factory=dict)  # (client, id)
    received: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[int, Position] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    what_if_ids: set[tuple[int, int]] = field(default_factory=set)
    next_perm_id: int = 1_000_001
    _matcher: asyncio.Task[None] | None = None

    # ---- recording --------------------------------------------------------------------------
    def record(self, client_id: int, order_id: int, inst: Instrument | None,
               fields: dict[str, str], contract_text: str) -> None:
        """Keep what the client sent, decoded, for tests to inspect field by field."""
        entry: dict[str, Any] = {
            "order_id": order_id, "client_id": client_id, "contract": contract_text,
            "symbol": inst.symbol if inst else "", "sec_type": inst.sec_type if inst else "",
            "con_id": inst.con_id if inst else 0, "expiry": inst.expiry if inst else "",
            "strike": inst.strike if inst else 0.0, "right": inst.right if inst else "",
            "action": fields.get("action", ""), "totalQuantity": number(fields, "totalQuantity"),
            "orderType": fields.get("orderType", ""), "lmtPrice": number(fields, "lmtPrice"),
            "auxPrice": number(fields, "auxPrice"), "tif": fields.get("tif", ""),
            "parentId": int(fields.get("parentId") or 0), "ocaGroup": fields.get("ocaGroup", ""),
            "ocaType": int(fields.get("ocaType") or 0), "orderRef": fields.get("orderRef", ""),
            "transmit": is_flag(fields, "transmit"), "whatIf": is_flag(fields, "whatIf"),
            "account": fields.get("account", ""), "outsideRth": is_flag(fields, "outsideRth"),
            "raw": dict(fields),
        }
        self.received.append(entry)
        self.stats.bump("what_if_orders" if entry["whatIf"] else "orders_received")

    # ---- what-if ----------------------------------------------------------------------------
    def what_if_state(self, inst: Instrument, fields: dict[str, str]) -> dict[str, FieldValue]:
        qty = number(fields, "totalQuantity") or 0.0
        price = number(fields, "lmtPrice") or self.market.mark(inst, self.market.now())
        spec = self.scenario.orders
        if inst.is_option and fields.get("action", "").upper() == "BUY":
            change = price * qty * inst.multiplier
        elif inst.is_option:
            spot = self.market.underlying(inst.symbol, self.market.now())
            change = spec.short_option_margin_pct / 100 * spot * qty * inst.multiplier
        else:
            change = spec.stock_margin_pct / 100 * price * qty
        values = self.scenario.account.values
        commission = self.commission(inst, qty)
        before = (values.get("InitMarginReq", 0.0), values.get("MaintMarginReq", 0.0),
                  values.get("EquityWithLoanValue", values.get("NetLiquidation", 0.0)))
        changes = (change, change * 0.8, -commission)
        state: dict[str, FieldValue] = {"commission": commission, "minCommission": commission,
                                        "maxCommission": commission,
                                        "commissionCurrency": self.scenario.account.currency}
        for i, part in enumerate(("initMargin", "maintMargin", "equityWithLoan")):
            state[f"{part}Before"] = f"{before[i]:.2f}"
            state[f"{part}Change"] = f"{changes[i]:.2f}"
            state[f"{part}After"] = f"{before[i] + changes[i]:.2f}"
        return state

    def commission(self, inst: Instrument, qty: float) -> float:
        spec = self.scenario.orders
        rate = spec.commission_per_contract if inst.is_option else spec.commission_per_share
        return round(max(spec.min_commission, rate * abs(qty)), 4)

    # ---- placing ----------------------------------------------------------------------------
    def place(self, client_id: int, order_id: int, inst: Instrument,
              fields: dict[str, str]) -> str:
        """Accept a (non what-if) order; returns "" or "duplicate" (error 103)."""
        if (client_id, order_id) in self.what_if_ids:
            return "duplicate"
        existing = self.orders.get((client_id, order_id))
        if existing is not None:
            if existing.status in DONE:
                return "duplicate"
            existing.fields.update(fields)
            if existing.status != "Held":
                self._ack(existing)
            self._after_transmit(existing)
            return ""
        order = SimOrder(order_id, client_id, self.next_perm_id, inst, dict(fields))
        order.fields["clientId"] = str(client_id)
        order.fields["permId"] = str(order.perm_id)
        self.next_perm_id += 1
        self.orders[(client_id, order_id)] = order
        self._after_transmit(order)
        return ""

    def _after_transmit(self, order: SimOrder) -> None:
        if not is_flag(order.fields, "transmit"):
            return
        group = self._bracket(order)
        for member in group:
            if member.status == "Held":
                parent = self.orders.get((member.client_id, member.parent_id))
                waiting = parent is not None and parent.status != "Filled"
                member.status = "PreSubmitted" if waiting else "Submitted"
                self._ack(member)
        self._ensure_matcher()

    def _bracket(self, order: SimOrder) -> list[SimOrder]:
        root_id = order.parent_id or order.order_id
        members = [o for o in self.orders.values()
                   if o.client_id == order.client_id
                   and (o.order_id == root_id or o.parent_id == root_id)]
        return sorted(members, key=lambda o: o.order_id)

    def _ack(self, order: SimOrder) -> None:
        self.send(order.client_id, self.open_order_message(order))
        self.send(order.client_id, self.status_message(order))

    def open_order_message(self, order: SimOrder,
                           state: dict[str, FieldValue] | None = None) -> list[FieldValue]:
        return encode_open_order(order.order_id, out.contract_head(order.inst), order.fields,
                                 order.status, state or {}, self.scenario.server_version)

    def completed_message(self, order: SimOrder) -> list[FieldValue]:
        return encode_completed_order(out.contract_head(order.inst), order.fields, order.status,
                                      order.completed_time, self.scenario.server_version)

    def status_message(self, order: SimOrder) -> list[FieldValue]:
        remaining = max(0.0, order.quantity - order.filled)
        return out.order_status(order.order_id, order.status, order.filled, remaining,
                                order.avg_price, order.perm_id, order.parent_id,
                                order.avg_price, order.client_id)

    # ---- cancelling -------------------------------------------------------------------------
    def cancel(self, client_id: int, order_id: int) -> str:
        """Returns "" or the reason the cancel failed ("unknown" / "done")."""
        order = self.orders.get((client_id, order_id))
        if order is None:
            return "unknown"
        if order.status in DONE:
            return "done"
        self._cancel(order)
        for child in list(self.orders.values()):
            if (child.client_id == client_id and child.parent_id == order_id
                    and child.status not in DONE):
                self._cancel(child)
        return ""

    def cancel_all(self) -> None:
        for order in list(self.orders.values()):
            if order.status not in DONE:
                self._cancel(order)

    def _cancel(self, order: SimOrder) -> None:
        order.status = "Cancelled"
        order.completed_time = self._stamp()
        self.send(order.client_id, self.status_message(order))

    def active_for(self, client_id: int | None) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.status not in DONE and o.status != "Held"
                and (client_id is None or o.client_id == client_id)]

    def done_for(self, client_id: int | None) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.status in DONE
                and (client_id is None or o.client_id == client_id)]

    # ---- matching ---------------------------------------------------------------------------
    def _ensure_matcher(self) -> None:
        if self.scenario.orders.fill_mode == "never":
            return
        if self._matcher is None or self._matcher.done():
            self._matcher = asyncio.get_running_loop().create_task(self._match_loop())
            self._matcher.add_done_callback(_log_failure)

    async def _match_loop(self) -> None:
        interval = self.scenario.orders.match_interval_s
        while True:
            working = [o for o in self.orders.values() if o.status in ("Submitted", "PreSubmitted")]
            if not working:
                return
            for order in working:
                if order.status == "Submitted":
                    price = self._fill_price(order)
                    if price is not None:
                        self._fill(order, price)
            await asyncio.sleep(interval)

    def _fill_price(self, order: SimOrder) -> float | None:
        now = self.market.now()
        quote = self.market.quote(order.inst, now)
        buy = order.action == "BUY"
        limit = number(order.fields, "lmtPrice")
        kind = order.fields.get("orderType", "").upper()
        if self.scenario.orders.fill_mode == "immediate":
            return limit if limit is not None else round(self.market.mark(order.inst, now), 4)
        touch = quote.ask if buy else quote.bid
        if touch is None or touch <= 0 or math.isnan(touch):
            return None
        if kind in ("STP", "STP LMT"):
            stop = number(order.fields, "auxPrice")
            last = self.market.mark(order.inst, now)
            if stop is None or (last < stop if buy else last > stop):
                return None
            if kind == "STP":
                return touch
        if kind == "MKT":
            return touch
        if limit is None:
            return None
        if buy and touch <= limit:
            return min(limit, touch)
        if not buy and touch >= limit:
            return max(limit, touch)
        return None

    def _fill(self, order: SimOrder, price: float) -> None:
        shares = order.quantity - order.filled
        order.filled, order.avg_price, order.status = order.quantity, price, "Filled"
        order.completed_time = self._stamp()
        execution = Execution(f"{order.perm_id:08x}.{len(self.executions) + 1:04d}.01.01", order,
                              shares, price, self._stamp(), self.commission(order.inst, shares))
        self.executions.append(execution)
        self.stats.bump("fills")
        self.send(order.client_id, self.exec_message(execution, -1))
        self.send(order.client_id, out.commission_report(
            execution.exec_id, execution.commission, self.scenario.account.currency))
        self.send(order.client_id, self.status_message(order))
        self._book_position(order, shares, price)
        for other in self.orders.values():
            if other.status in DONE or other is order or other.client_id != order.client_id:
                continue
            if other.parent_id == order.order_id and other.status == "PreSubmitted":
                other.status = "Submitted"
                self.send(other.client_id, self.status_message(other))
            elif (order.parent_id and other.parent_id == order.parent_id) or (
                    order.fields.get("ocaGroup") and
                    other.fields.get("ocaGroup") == order.fields.get("ocaGroup")):
                self._cancel(other)

    def exec_message(self, e: Execution, req_id: int) -> list[FieldValue]:
        o = e.order
        return out.exec_details(req_id, o.order_id, o.inst, e.exec_id, e.when,
                                self.scenario.account.id, o.action, e.shares, e.price,
                                o.perm_id, o.client_id, o.fields.get("orderRef", ""))

    def _book_position(self, order: SimOrder, shares: float, price: float) -> None:
        pos = self.positions.setdefault(order.inst.con_id, Position(order.inst))
        signed = shares if order.action == "BUY" else -shares
        cost = price * order.inst.multiplier
        new_qty = pos.quantity + signed
        if pos.quantity == 0 or (pos.quantity > 0) == (signed > 0):
            total = pos.avg_cost * abs(pos.quantity) + cost * abs(signed)
            pos.avg_cost = total / abs(new_qty) if new_qty else 0.0
        elif new_qty == 0:
            pos.avg_cost = 0.0
        elif (new_qty > 0) != (pos.quantity > 0):
            pos.avg_cost = cost
        pos.quantity = new_qty
        self.on_position(pos)

    def _stamp(self) -> str:
        local = self.market.clock.local(self.market.now())
        return f"{local:%Y%m%d %H:%M:%S} {self.scenario.session.timezone}"

    def close(self) -> None:
        if self._matcher is not None:
            self._matcher.cancel()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("order matcher stopped; working orders will not fill until the next order",
                  exc_info=task.exception())
