"""placeOrder (what-if and paper), cancelOrder, open/completed orders, executions.

One connection's order messages are carried out strictly in arrival order, each after the
ones before it (``Session.in_order``): a bracket's parent before its children, a cancel
after the place it follows (it finds the order even while the place waits out its latency),
and a query after both. A place waits ``latency.order_s`` for its turn; the steps belong to
the server, so an order read before its client disconnected is still placed (or rejected)
and stays under that client id for later connections to see.
"""

from __future__ import annotations

from tools.gateway_sim.codec import ContractFields, FieldReader
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.order_codec import decode_place_order, is_flag, number
from tools.gateway_sim.orders import SimOrder
from tools.gateway_sim.session import Handler, Session

# what TWS answers every placeOrder while its API settings have "Read-Only API" ticked
READ_ONLY = (
    "Error validating request.-'bN' : cause - The API interface is currently in Read-Only mode."
)


def place_order(s: Session, r: FieldReader) -> None:
    order_id, contract, fields = decode_place_order(r, s.version)
    found = s.server.market.book.resolve(contract, s.server.market.now())
    inst = found[0] if len(found) == 1 else None
    s.server.orders.record(s.client_id or 0, order_id, inst, fields, contract.describe())
    s.server.log_order(s.server.orders.received[-1])
    s.in_order(lambda: _place(s, order_id, contract, inst, fields), latency="order")


def _place(
    s: Session,
    order_id: int,
    contract: ContractFields,
    inst: Instrument | None,
    fields: dict[str, str],
) -> None:
    if inst is None or s.fault_state("no_security_definition", inst):
        s.error(
            order_id,
            200,
            f"No security definition has been found for the request ({contract.describe()})",
        )
        return
    if s.server.scenario.orders.read_only_api:
        s.error(order_id, 321, READ_ONLY)
        return
    reason = _reject_reason(s, fields) or _scenario_reject(s, inst, fields)
    if reason:
        s.error(order_id, 201, f"Order rejected - reason:{reason}")
    elif is_flag(fields, "whatIf"):
        _what_if(s, order_id, inst, fields)
    elif s.server.orders.place(s.client_id or 0, order_id, inst, fields) == "duplicate":
        s.error(order_id, 103)
    s.server.save_state()  # a held (untransmitted) order or a what-if sends no order event


def _reject_reason(s: Session, fields: dict[str, str]) -> str:
    if fields.get("action", "").upper() not in ("BUY", "SELL"):
        return f"invalid action {fields.get('action')!r}"
    if (number(fields, "totalQuantity") or 0.0) <= 0:
        return "order quantity must be positive"
    kind = fields.get("orderType", "").upper()
    if kind in ("LMT", "STP LMT") and number(fields, "lmtPrice") is None:
        return "limit price is missing"
    if kind in ("STP", "STP LMT") and number(fields, "auxPrice") is None:
        return "stop price is missing"
    account = fields.get("account", "")
    if account and account != s.server.scenario.account.id:
        return f"The account code {account} is invalid"
    return ""


def _scenario_reject(s: Session, inst: Instrument, fields: dict[str, str]) -> str:
    """A scenario rule refusing this order, or a child whose parent was refused."""
    parent = int(fields.get("parentId") or 0)
    if parent and (s.client_id or 0, parent) not in s.server.orders.orders:
        return "the parent order was not accepted"
    action = fields.get("action", "").upper()
    for rule in s.server.scenario.orders.rejects:
        if (
            rule.symbol in ("", inst.symbol)
            and rule.sec_type in ("ANY", inst.sec_type)
            and rule.action in ("", action)
            and not is_flag(fields, "whatIf")
        ):
            return rule.reason
    return ""


def _what_if(s: Session, order_id: int, inst: Instrument, fields: dict[str, str]) -> None:
    book = s.server.orders
    client_id = s.client_id or 0
    if (client_id, order_id) in book.what_if_ids or (client_id, order_id) in book.orders:
        s.error(order_id, 103)
        return
    book.what_if_ids.add((client_id, order_id))
    probe = SimOrder(order_id, client_id, 0, inst, dict(fields), status="PreSubmitted")
    probe.fields["clientId"] = str(client_id)
    probe.fields["permId"] = "0"
    s.send(book.open_order_message(probe, book.what_if_state(inst, fields)))


def cancel_order(s: Session, r: FieldReader) -> None:
    r.skip()
    order_id = r.integer()
    s.in_order(lambda: _cancel(s, order_id))


def _cancel(s: Session, order_id: int) -> None:
    result = s.server.orders.cancel(s.client_id or 0, order_id)
    if result == "unknown":
        s.error(order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
    elif result == "done":
        s.error(
            order_id,
            10148,
            f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: Filled.",
        )


def _send_open_orders(s: Session, client_id: int | None) -> None:
    book = s.server.orders
    for order in book.active_for(client_id):
        s.send(book.open_order_message(order))
        s.send(book.status_message(order))
    s.send([53, 1])


def req_open_orders(s: Session, r: FieldReader) -> None:
    s.in_order(lambda: _send_open_orders(s, s.client_id))


def req_all_open_orders(s: Session, r: FieldReader) -> None:
    s.in_order(lambda: _send_open_orders(s, None))


def req_completed_orders(s: Session, r: FieldReader) -> None:
    s.in_order(lambda: _send_completed_orders(s))


def _send_completed_orders(s: Session) -> None:
    book = s.server.orders
    for order in book.done_for(None):
        s.send(book.completed_message(order))
    s.send([102])


def req_executions(s: Session, r: FieldReader) -> None:
    """Today's executions of every client of the account (IBKR: the current day's, whoever
    placed them, also a client that has disconnected since), each with its commission report;
    the filter's client id (0 = all), symbol, secType and side narrow them."""
    r.skip()
    req_id, client_filter = r.integer(), r.integer()
    r.skip(2)  # account code (one account), time (not applied: today's executions are sent)
    symbol, sec_type = r.text().upper(), r.text().upper()
    r.skip()  # exchange
    side = r.text().upper()
    s.in_order(lambda: _send_executions(s, req_id, client_filter, symbol, sec_type, side))


def _send_executions(
    s: Session, req_id: int, client_filter: int, symbol: str, sec_type: str, side: str
) -> None:
    book = s.server.orders
    today = s.server.clock.trading_day_start(s.server.market.now())
    for e in book.executions:
        o = e.order
        if e.ts < today or (client_filter and o.client_id != client_filter):
            continue
        if (symbol and o.inst.symbol != symbol) or (sec_type and o.inst.sec_type != sec_type):
            continue
        if side and not o.action.startswith(side[:1]):
            continue
        s.send(book.exec_message(e, req_id))
        s.send(book.commission_message(e))
    s.send([55, 1, req_id])


def req_global_cancel(s: Session, r: FieldReader) -> None:
    s.in_order(s.server.orders.cancel_all)


HANDLERS: dict[int, Handler] = {
    3: place_order,
    4: cancel_order,
    5: req_open_orders,
    16: req_all_open_orders,
    99: req_completed_orders,
    7: req_executions,
    58: req_global_cancel,
}
