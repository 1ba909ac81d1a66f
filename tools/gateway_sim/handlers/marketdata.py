"""reqMktData (snapshot and streaming) and cancelMktData, with the line and id rules.

Checks, in the gateway's order: duplicate ticker id (322 or 102), generic ticks with a
snapshot (414), unknown contract (200), line limit (101). A request holds a line until its
snapshot ends, or, streaming, until cancelMktData. Then: tickReqParams (81), marketDataType
(58), price/size ticks, model greeks for options (21, tick type 13), and tickSnapshotEnd (57).
"""

from __future__ import annotations

import asyncio

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.codec import FieldReader
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.market import Quote
from tools.gateway_sim.session import Handler, Session, Subscription


def req_mkt_data(s: Session, r: FieldReader) -> None:
    r.skip()  # version
    req_id = r.integer()
    contract = r.contract()
    if contract.sec_type == "BAG":
        r.skip(4 * r.integer())
    if r.flag():
        r.skip(3)  # delta-neutral contract
    generic, snapshot = r.text(), r.flag()
    if s.faults:
        s.faults.on_market_data_request()
    if req_id in s.subscriptions:
        s.error(req_id, s.server.scenario.rules.duplicate_ticker_code)
        return
    if snapshot and generic.strip():
        s.error(req_id, 414)
        return
    found = s.server.market.book.resolve(contract, s.server.market.now())
    if len(found) != 1 or s.fault_state("no_security_definition", found[0]):
        s.error(req_id, 200, f"{out.ERROR_TEXT[200]} ({contract.describe()})")
        return
    if not s.server.acquire_line(s, req_id):
        s.error(req_id, 101)
        return
    sub = Subscription(req_id, found[0], snapshot)
    s.subscriptions[req_id] = sub
    s.server.counters.bump("snapshots" if snapshot else "streams")
    sub.task = s.spawn(_serve(s, sub))


async def _serve(s: Session, sub: Subscription) -> None:
    await s.data_ready("market_data")
    data_type = _data_type(s, sub)
    if data_type is None:
        s.end_subscription(sub.req_id)
        return
    inst, delayed = sub.inst, data_type in (3, 4)
    s.send([81, sub.req_id, inst.min_tick, "9c0001", 3])
    s.send([58, 1, sub.req_id, data_type])
    _send_quote(s, sub.req_id, inst, s.server.market.quote(inst, s.server.market.now()), delayed)
    if sub.snapshot:
        await _finish_snapshot(s, sub)
    else:
        await _stream(s, sub, delayed)


def _data_type(s: Session, sub: Subscription) -> int | None:
    """The market data type served, or None after an error that ends the request."""
    fault = s.fault_state("no_market_data", sub.inst)
    if fault is not None:
        code = fault.code or 354
        s.error(sub.req_id, code, fault.message)
        if code != 10167:
            return None
        return 4 if s.md_type in (2, 4) else 3
    if sub.inst.spec.live_data:
        return 2 if s.md_type in (2, 4) else 1
    if s.md_type in (1, 2):
        s.error(sub.req_id, 354)
        return None
    s.error(sub.req_id, 10167)
    return s.md_type


async def _finish_snapshot(s: Session, sub: Subscription) -> None:
    if s.fault_state("snapshot_never_ends", sub.inst):
        return  # holds its line until cancelMktData or disconnect, like a stuck snapshot
    await s.data_ready("snapshot_end")
    if sub.req_id in s.subscriptions:
        s.send([57, 1, sub.req_id])
        s.end_subscription(sub.req_id)


async def _stream(s: Session, sub: Subscription, delayed: bool) -> None:
    interval = s.server.scenario.market_data.stream_interval_s
    while True:
        await asyncio.sleep(interval)
        await s.link.wait()
        _send_quote(
            s, sub.req_id, sub.inst, s.server.market.quote(sub.inst, s.server.market.now()), delayed
        )


def _send_quote(s: Session, req_id: int, inst: Instrument, q: Quote, delayed: bool) -> None:
    prices = (
        (out.BID, q.bid, q.bid_size),
        (out.ASK, q.ask, q.ask_size),
        (out.LAST, q.last, q.last_size),
        (out.CLOSE, q.close, 0.0),
        (out.OPEN, q.open, 0.0),
    )
    for tick, price, size in prices:
        if price is not None:
            s.send(out.tick_price(req_id, tick, price, size, delayed))
    if q.volume is not None:
        s.send(out.tick_size(req_id, out.VOLUME, q.volume, delayed))
    if inst.is_option:
        greeks = None if q.greeks_missing else q.greeks
        s.send(out.tick_option(req_id, out.MODEL_OPTION, greeks, delayed))


def cancel_mkt_data(s: Session, r: FieldReader) -> None:
    r.skip()
    req_id = r.integer()
    if s.end_subscription(req_id) is None:
        s.error(req_id, 300, f"{out.ERROR_TEXT[300]}{req_id}")


HANDLERS: dict[int, Handler] = {
    1: req_mkt_data,
    2: cancel_mkt_data,
}
