"""startApi and the small session requests: ids, accounts, time, market data type, rules.

startApi with a client id already connected gets error 326 on reqId -1 and the socket is
closed shortly after, with no nextValidId / managedAccounts (so the client never gets ready).
"""

from __future__ import annotations

from tools.gateway_sim.codec import FieldReader
from tools.gateway_sim.session import Handler, Session


def start_api(s: Session, r: FieldReader) -> None:
    r.skip()  # version
    client_id = r.integer()
    if s.client_id is not None:
        return
    if not s.server.register_client(s, client_id):
        s.server.counters.bump("clients_rejected")
        s.error(-1, 326)
        s.drop(s.server.scenario.rules.client_id_in_use_close_s)
        return
    s.send([15, 1, s.server.scenario.account.id])
    s.send([9, 1, s.server.next_order_id()])
    for code in s.server.scenario.farm_notices:
        s.error(-1, code)
    s.start_faults()


def req_ids(s: Session, r: FieldReader) -> None:
    s.send([9, 1, s.server.next_order_id()])


def req_managed_accounts(s: Session, r: FieldReader) -> None:
    s.send([15, 1, s.server.scenario.account.id])


def req_current_time(s: Session, r: FieldReader) -> None:
    async def answer() -> None:
        await s.delay("current_time")
        skew = s.server.scenario.clock.current_time_skew_s
        s.send([49, 1, int(s.server.market.now() + skew)])

    s.spawn(answer())


def req_market_data_type(s: Session, r: FieldReader) -> None:
    r.skip()
    kind = r.integer(1)
    if kind not in (1, 2, 3, 4):
        s.error(-1, 321, f"Error validating request: invalid market data type {kind}")
        return
    s.md_type = kind


def req_market_rule(s: Session, r: FieldReader) -> None:
    rule_id = r.integer()
    s.send([93, rule_id, 2, 0.0, 0.01, 3.0, 0.05] if rule_id == 26 else [93, rule_id, 1, 0.0, 0.01])


def req_head_timestamp(s: Session, r: FieldReader) -> None:
    req_id = r.integer()
    r.contract()
    r.skip(4)  # includeExpired, useRTH, whatToShow
    stamp = int(s.server.market.now()) - 20 * 365 * 86_400
    s.send([88, req_id, str(stamp)])


def ignore(s: Session, r: FieldReader) -> None:
    """Requests the sim accepts without an answer (auto-open-orders, server log level ...)."""


HANDLERS: dict[int, Handler] = {
    71: start_api,
    8: req_ids,
    17: req_managed_accounts,
    49: req_current_time,
    59: req_market_data_type,
    91: req_market_rule,
    87: req_head_timestamp,
    14: ignore,
    15: ignore,
}
