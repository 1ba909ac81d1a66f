"""Paper order book: records every order, acknowledges, fills against the simulated market.

::

    placeOrder -> place() -> Held (transmit=0) | PreSubmitted (child waiting) | Submitted
    matcher task, every match_interval_s while orders work:
        match_pass(now): closes.sweep(now)            DAY expiry, option settlement
                         plan_pass() (matching.py)    which orders execute, how many
                         _execute() each              the ledger books it (cash, avgCost,
                                                      realized P&L); execDetails, commission
                                                      report, status, position / portfolio
                         _after_execution() each      children start, OCA / bracket
                                                      siblings cancelled or reduced (oca.py)
    CloseKeeper task (closes.py): sweeps at every session close even with no matcher running

Orders with ``transmit=0`` are held silently (as TWS does) until an order of the same bracket
is transmitted; bracket children wait (PreSubmitted) until their parent has filled
completely, then work. What-if orders are answered with an OrderState (costs.py) and never
work. An execution may be a part of the order (``orders.max_fill_per_match``): each part has
its own execDetails + commissionReport, and orderStatus shows filled / remaining / average.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.gateway_sim import costs
from tools.gateway_sim import outgoing as out
from tools.gateway_sim.closes import CloseKeeper
from tools.gateway_sim.codec import FieldValue
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.ledger import Ledger
from tools.gateway_sim.market import Market
from tools.gateway_sim.matching import Planned, plan_pass
from tools.gateway_sim.oca import OcaBook
from tools.gateway_sim.order_codec import (
    encode_completed_order,
    encode_open_order,
    is_flag,
    number,
)
from tools.gateway_sim.positions import Position
from tools.gateway_sim.scenario import Scenario
from tools.gateway_sim.stats import Stats

log = logging.getLogger("gateway_sim.orders")
DONE = frozenset({"Filled", "Cancelled"})
WORKING = frozenset({"Submitted", "PreSubmitted"})
DAY_TIFS = frozenset({"DAY", ""})  # IBKR: "unless otherwise specified, every order is a Day order"
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
    last_price: float = 0.0
    completed_time: str = ""
    base_qty: float = 0.0  # the size as placed: OCA reductions are shares of it
    commission_paid: float = 0.0
    placed_ts: float = 0.0  # sim time it was transmitted
    day_deadline: float | None = None  # DAY orders: the session end that cancels them

    @property
    def quantity(self) -> float:
        return number(self.fields, "totalQuantity") or 0.0

    @property
    def remaining(self) -> float:
        return max(0.0, self.quantity - self.filled)

    @property
    def parent_id(self) -> int:
        raw = self.fields.get("parentId", "")
        return int(raw) if raw else 0

    @property
    def action(self) -> str:
        return self.fields.get("action", "").upper()

    @property
    def oca_group(self) -> str:
        return self.fields.get("ocaGroup", "")

    @property
    def oca_type(self) -> int:
        return int(self.fields.get("ocaType") or 0)

    @property
    def tif(self) -> str:
        return self.fields.get("tif", "").upper()

    @property
    def outside_rth(self) -> bool:
        return is_flag(self.fields, "outsideRth")


@dataclass
class Execution:
    exec_id: str
    order: SimOrder
    shares: float
    price: float
    when: str
    commission: float
    cum_qty: float  # the order's filled quantity and average price after this part
    avg_price: float
    ts: float = 0.0  # sim time of the execution
    realized: float | None = None  # its realized P&L (None: it only opened or added)


@dataclass
class OrderBook:
    scenario: Scenario
    market: Market
    stats: Stats
    send: Sender
    on_position: Callable[[Position], None]
    run_tasks: bool = True  # False: a test drives match_pass / closes.sweep itself
    orders: dict[tuple[int, int], SimOrder] = field(default_factory=dict)  # (client, id)
    received: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[int, Position] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    what_if_ids: set[tuple[int, int]] = field(default_factory=set)
    next_perm_id: int = 1_000_001
    oca: OcaBook = field(default_factory=OcaBook)
    _matcher: asyncio.Task[None] | None = None
    _closer: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.closes = CloseKeeper(self)
        self.ledger = Ledger(self.scenario, self.market, self.positions)

    # ---- recording --------------------------------------------------------------------------
    def record(
        self,
        client_id: int,
        order_id: int,
        inst: Instrument | None,
        fields: dict[str, str],
        contract_text: str,
    ) -> None:
        """Keep what the client sent, decoded, for tests to inspect field by field."""
        entry: dict[str, Any] = {
            "order_id": order_id,
            "client_id": client_id,
            "contract": contract_text,
            "symbol": inst.symbol if inst else "",
            "sec_type": inst.sec_type if inst else "",
            "con_id": inst.con_id if inst else 0,
            "expiry": inst.expiry if inst else "",
            "strike": inst.strike if inst else 0.0,
            "right": inst.right if inst else "",
            "action": fields.get("action", ""),
            "totalQuantity": number(fields, "totalQuantity"),
            "orderType": fields.get("orderType", ""),
            "lmtPrice": number(fields, "lmtPrice"),
            "auxPrice": number(fields, "auxPrice"),
            "tif": fields.get("tif", ""),
            "parentId": int(fields.get("parentId") or 0),
            "ocaGroup": fields.get("ocaGroup", ""),
            "ocaType": int(fields.get("ocaType") or 0),
            "orderRef": fields.get("orderRef", ""),
            "transmit": is_flag(fields, "transmit"),
            "whatIf": is_flag(fields, "whatIf"),
            "account": fields.get("account", ""),
            "outsideRth": is_flag(fields, "outsideRth"),
            "raw": dict(fields),
        }
        self.received.append(entry)
        self.stats.bump("what_if_orders" if entry["whatIf"] else "orders_received")

    def what_if_state(self, inst: Instrument, fields: dict[str, str]) -> dict[str, FieldValue]:
        return costs.what_if_state(self.scenario, self.market, inst, fields)

    # ---- placing ----------------------------------------------------------------------------
    def place(self, client_id: int, order_id: int, inst: Instrument, fields: dict[str, str]) -> str:
        """Accept a (non what-if) order; returns "" or "duplicate" (error 103)."""
        if (client_id, order_id) in self.what_if_ids:
            return "duplicate"
        existing = self.orders.get((client_id, order_id))
        if existing is not None:
            if existing.status in DONE:
                return "duplicate"
            before = existing.quantity
            existing.fields.update(fields)
            if existing.quantity != before:  # the client resized it: a new base for OCA
                existing.base_qty = existing.quantity
            if existing.status != "Held":  # a tif change (DAY <-> GTC) moves the deadline
                existing.day_deadline = self._day_deadline(existing, existing.placed_ts)
                self._ack(existing)
            self._after_transmit(existing)
            return ""
        order = SimOrder(order_id, client_id, self.next_perm_id, inst, dict(fields))
        order.fields["clientId"] = str(client_id)
        order.fields["permId"] = str(order.perm_id)
        order.base_qty = order.quantity
        self.next_perm_id += 1
        self.orders[(client_id, order_id)] = order
        self._after_transmit(order)
        return ""

    def _after_transmit(self, order: SimOrder) -> None:
        if not is_flag(order.fields, "transmit"):
            return
        now = self.market.now()
        for member in self._bracket(order):
            if member.status == "Held":
                parent = self.orders.get((member.client_id, member.parent_id))
                waiting = parent is not None and parent.status != "Filled"
                member.status = "PreSubmitted" if waiting else "Submitted"
                member.placed_ts = now
                member.day_deadline = self._day_deadline(member, now)
                self._ack(member)
        self._ensure_matcher()

    def _day_deadline(self, order: SimOrder, now: float) -> float | None:
        """DAY: the end of the session it was placed in (or the next, placed after the
        close); options and regular-hours stock orders die at the regular close."""
        if order.tif not in DAY_TIFS:
            return None  # GTC works across days; other TIFs are not expired by the sim
        rth = order.inst.is_option or not order.outside_rth
        return self.market.clock.session_end_after(now, rth)

    def _bracket(self, order: SimOrder) -> list[SimOrder]:
        root_id = order.parent_id or order.order_id
        members = [
            o
            for o in self.orders.values()
            if o.client_id == order.client_id and (o.order_id == root_id or o.parent_id == root_id)
        ]
        return sorted(members, key=lambda o: o.order_id)

    def _ack(self, order: SimOrder) -> None:
        self.send(order.client_id, self.open_order_message(order))
        self.send(order.client_id, self.status_message(order))

    def open_order_message(
        self, order: SimOrder, state: dict[str, FieldValue] | None = None
    ) -> list[FieldValue]:
        return encode_open_order(
            order.order_id,
            out.contract_head(order.inst),
            order.fields,
            order.status,
            state or {},
            self.scenario.server_version,
        )

    def completed_message(self, order: SimOrder) -> list[FieldValue]:
        return encode_completed_order(
            out.contract_head(order.inst),
            order.fields,
            order.status,
            order.completed_time,
            self.scenario.server_version,
        )

    def status_message(self, order: SimOrder) -> list[FieldValue]:
        return out.order_status(
            order.order_id,
            order.status,
            order.filled,
            order.remaining,
            order.avg_price,
            order.perm_id,
            order.parent_id,
            order.last_price,
            order.client_id,
        )

    # ---- cancelling and resizing ------------------------------------------------------------
    def cancel(self, client_id: int, order_id: int) -> str:
        """Returns "" or the reason the cancel failed ("unknown" / "done")."""
        order = self.orders.get((client_id, order_id))
        if order is None:
            return "unknown"
        if order.status in DONE:
            return "done"
        self.cancel_at(order, self.market.now(), with_children=True)
        return ""

    def cancel_all(self) -> None:
        now = self.market.now()
        for order in list(self.orders.values()):
            if order.status not in DONE:
                self.cancel_at(order, now)

    def cancel_at(self, order: SimOrder, ts: float, with_children: bool = False) -> None:
        """Cancel ``order`` as of sim time ``ts`` (its completedTime); a parent's cancel
        takes its unfinished children with it, as IBKR's does. The client gets orderStatus
        Cancelled, then error 202 "Order Canceled - reason:" on the order id, as IBKR sends
        after a client's cancel; the sim sends the same whatever cancelled it (the close, IOC,
        an OCA sibling: [unverified] that IBKR always adds the 202 there)."""
        order.status = "Cancelled"
        order.completed_time = self._stamp(ts)
        self.send(order.client_id, self.status_message(order))
        self.stats.error_sent(202)
        self.send(order.client_id, out.error(order.order_id, 202))
        if not with_children:
            return
        for child in list(self.orders.values()):
            if (
                child.client_id == order.client_id
                and child.parent_id == order.order_id
                and child.status not in DONE
            ):
                self.cancel_at(child, ts)

    def set_quantity(self, order: SimOrder, total: float) -> None:
        """Shrink a working order (an OCA reduction): openOrder with the new size, status."""
        order.fields["totalQuantity"] = _quantity_text(total)
        self._ack(order)

    def active_for(self, client_id: int | None) -> list[SimOrder]:
        return [
            o
            for o in self.orders.values()
            if o.status in WORKING and (client_id is None or o.client_id == client_id)
        ]

    def done_for(self, client_id: int | None) -> list[SimOrder]:
        return [
            o
            for o in self.orders.values()
            if o.status in DONE and (client_id is None or o.client_id == client_id)
        ]

    # ---- tasks ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the close timer (needs the running loop: call from the server's start)."""
        if self.run_tasks and self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self.closes.run())
            self._closer.add_done_callback(_log_failure)

    def _ensure_matcher(self) -> None:
        if self.scenario.orders.fill_mode == "never" or not self.run_tasks:
            return
        if self._matcher is None or self._matcher.done():
            self._matcher = asyncio.get_running_loop().create_task(self._match_loop())
            self._matcher.add_done_callback(_log_failure)

    async def _match_loop(self) -> None:
        interval = self.scenario.orders.match_interval_s
        while any(o.status in WORKING for o in self.orders.values()):
            self.match_pass(self.market.now())
            await asyncio.sleep(interval)

    def close(self) -> None:
        for task in (self._matcher, self._closer):
            if task is not None:
                task.cancel()

    # ---- matching ---------------------------------------------------------------------------
    def match_pass(self, ts: float) -> None:
        """One pass at sim time ``ts``: closes first (nothing fills after its session ended),
        then every planned execution, then what the executions do to other orders."""
        self.closes.sweep(ts)
        working = [o for o in self.orders.values() if o.status in WORKING]
        # IOC: what did not execute in its first pass is cancelled (not a child that only
        # starts working during this pass: its first pass is the next one)
        ioc = [o for o in working if o.tif == "IOC" and o.status == "Submitted"]
        spec = self.scenario.orders
        plan = plan_pass(working, self.market, spec.fill_mode, spec.max_fill_per_match, ts)
        for step in plan:
            self._execute(step, ts)
        for step in plan:
            self._after_execution(step.order, step.qty, ts)
        for order in ioc:
            if order.status == "Submitted":
                self.cancel_at(order, ts, with_children=True)

    def _execute(self, step: Planned, ts: float) -> None:
        order, qty, price = step.order, step.qty, step.price
        before = order.filled
        order.filled = before + qty
        order.avg_price = round((order.avg_price * before + price * qty) / order.filled, 6)
        order.last_price = price
        if order.remaining <= 1e-9:
            order.status, order.completed_time = "Filled", self._stamp(ts)
        fee = costs.part_commission(
            self.scenario.orders, order.inst, order.filled, order.commission_paid
        )
        order.commission_paid += fee
        pos, realized = self.ledger.trade(
            order.inst, qty if order.action == "BUY" else -qty, price, fee, ts
        )
        serial = len(self.executions) + 1
        execution = Execution(
            f"{order.perm_id:08x}.{serial:04d}.01.01",
            order,
            qty,
            price,
            self._stamp(ts),
            fee,
            order.filled,
            order.avg_price,
            ts,
            realized,
        )
        self.executions.append(execution)
        self.stats.bump("fills")
        self.send(order.client_id, self.exec_message(execution, -1))
        self.send(order.client_id, self.commission_message(execution))
        self.send(order.client_id, self.status_message(order))
        self.on_position(pos)  # position / portfolio / account rows to the subscribers

    def _after_execution(self, order: SimOrder, qty: float, ts: float) -> None:
        if order.status == "Filled":  # attached children start working
            for child in self.orders.values():
                if (
                    child.client_id == order.client_id
                    and child.parent_id == order.order_id
                    and child.status == "PreSubmitted"
                ):
                    child.status = "Submitted"
                    self.send(child.client_id, self.status_message(child))
        for consequence in self.oca.after_execution(order, qty, self.orders.values()):
            if consequence.new_total is None:
                self.cancel_at(consequence.order, ts)
            else:
                self.set_quantity(consequence.order, consequence.new_total)

    def exec_message(self, e: Execution, req_id: int) -> list[FieldValue]:
        o = e.order
        return out.exec_details(
            req_id,
            o.order_id,
            o.inst,
            e.exec_id,
            e.when,
            self.scenario.account.id,
            o.action,
            e.shares,
            e.price,
            o.perm_id,
            o.client_id,
            o.fields.get("orderRef", ""),
            e.cum_qty,
            e.avg_price,
        )

    def commission_message(self, e: Execution) -> list[FieldValue]:
        """IBKR's commissionReport carries the realized P&L of a closing execution."""
        return out.commission_report(
            e.exec_id, e.commission, self.scenario.account.currency, e.realized
        )

    def _stamp(self, ts: float) -> str:
        local = self.market.clock.local(ts)
        return f"{local:%Y%m%d %H:%M:%S} {self.scenario.session.timezone}"


def _quantity_text(qty: float) -> str:
    """As a client writes it: whole units without a decimal point."""
    return str(int(qty)) if float(qty).is_integer() else repr(float(qty))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "order task stopped; working orders will not fill or expire until the next order",
            exc_info=task.exception(),
        )
