"""Contract details (stocks and options) and option chain parameters (reqSecDefOptParams).

Unknown contracts get error 200 on the request id and no End, as the gateway does. A stock's
tradingHours are the extended session (04:00-20:00), its liquidHours the regular one; an
option trades only in the regular session (09:30-16:00, early closes included), so both its
strings list that, as IBKR's do for US equity options. The chain answer is one message 75
per exchange (expiries and the union of strikes), then 76.
"""

from __future__ import annotations

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.codec import FieldReader
from tools.gateway_sim.session import Handler, Session


def req_contract_details(s: Session, r: FieldReader) -> None:
    r.skip()  # version
    req_id = r.integer()
    contract = r.contract()

    async def answer() -> None:
        await s.data_ready("contract_details")
        server = s.server
        now = server.market.now()
        found = server.market.book.resolve(contract, now)
        if not found or any(s.fault_state("no_security_definition", i) for i in found):
            s.error(req_id, 200, f"{out.ERROR_TEXT[200]} ({contract.describe()})")
            return
        tz = server.scenario.session.timezone
        extended = server.clock.hours_string(now, rth=False)
        liquid = server.clock.hours_string(now, rth=True)
        for inst in found:
            under = server.market.book.stocks[inst.symbol].con_id
            trading = liquid if inst.is_option else extended
            s.send(out.contract_details(req_id, inst, under, tz, trading, liquid))
        s.send([52, 1, req_id])

    s.spawn(answer())


def req_sec_def_opt_params(s: Session, r: FieldReader) -> None:
    req_id = r.integer()
    symbol = r.text().strip().upper()
    r.skip(2)  # futFopExchange, underlying secType
    con_id = r.integer()

    async def answer() -> None:
        await s.data_ready("sec_def")
        book = s.server.market.book
        stock = book.stocks.get(symbol)
        if (
            stock is None
            or (con_id and con_id != stock.con_id)
            or s.fault_state("no_security_definition", stock)
        ):
            s.error(req_id, 200, f"{out.ERROR_TEXT[200]} (options of {symbol})")
            return
        chain = book.chains.get(symbol)
        if chain is not None:
            days = chain.expiries(s.server.market.today())
            expiries = [d.strftime("%Y%m%d") for d in days]
            strikes = sorted({k for i in range(len(days)) for k in chain.strikes_for(i)})
            for exchange in chain.cfg.exchanges:
                s.send(
                    out.sec_def_param(
                        req_id,
                        exchange,
                        stock.con_id,
                        symbol,
                        chain.cfg.multiplier,
                        expiries,
                        strikes,
                    )
                )
        s.send([76, req_id])

    s.spawn(answer())


HANDLERS: dict[int, Handler] = {
    9: req_contract_details,
    78: req_sec_def_opt_params,
}
