"""Account requests: positions, account updates (single and multi), summary, PnL.

Values come from the scenario's ``account.values``; positions from ``account.positions`` plus
paper fills. All of these end with their End message so ``IB.connectAsync`` completes at once.
"""

from __future__ import annotations

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.codec import FieldReader
from tools.gateway_sim.session import Handler, Session


def _value_text(value: float) -> str:
    return f"{value:.2f}" if not float(value).is_integer() else f"{value:.0f}"


def req_positions(s: Session, r: FieldReader) -> None:
    s.wants_positions = True
    account = s.server.scenario.account.id
    for pos in s.server.positions():
        s.send(out.position(account, pos.inst, pos.quantity, pos.avg_cost))
    s.send([62, 1])


def cancel_positions(s: Session, r: FieldReader) -> None:
    s.wants_positions = False


def _account_values(s: Session) -> list[tuple[str, str, str]]:
    acct = s.server.scenario.account
    rows = [("AccountCode", acct.id, ""), ("AccountType", "INDIVIDUAL", ""),
            ("Currency", acct.currency, acct.currency)]
    rows += [(k, _value_text(v), acct.currency) for k, v in acct.values.items()]
    return rows


def req_account_updates(s: Session, r: FieldReader) -> None:
    r.skip()
    subscribe = r.flag()
    account = r.text() or s.server.scenario.account.id
    s.wants_account = subscribe
    if not subscribe:
        return

    async def answer() -> None:
        await s.delay("account")
        for key, value, currency in _account_values(s):
            s.send([6, 2, key, value, currency, account])
        now = s.server.market.now()
        for pos in s.server.positions():
            price = s.server.market.mark(pos.inst, now)
            s.send(out.portfolio(account, pos.inst, pos.quantity, price, pos.avg_cost))
        s.send([8, 1, s.server.clock.local(now).strftime("%H:%M")])
        s.send([54, 1, account])

    s.spawn(answer())


def req_account_updates_multi(s: Session, r: FieldReader) -> None:
    r.skip()
    req_id = r.integer()
    account = r.text() or s.server.scenario.account.id
    model_code = r.text()

    async def answer() -> None:
        await s.delay("account")
        for key, value, currency in _account_values(s):
            s.send([73, 1, req_id, account, model_code, key, value, currency])
        s.send([74, 1, req_id])

    s.spawn(answer())


def req_account_summary(s: Session, r: FieldReader) -> None:
    r.skip()
    req_id = r.integer()
    r.text()  # group
    tags = {t for t in r.text().split(",") if t and not t.startswith("$")}
    acct = s.server.scenario.account

    async def answer() -> None:
        await s.delay("account")
        for key, value in acct.values.items():
            if not tags or key in tags:
                s.send([63, 1, req_id, acct.id, key, _value_text(value), acct.currency])
        if not tags or "AccountType" in tags:
            s.send([63, 1, req_id, acct.id, "AccountType", "INDIVIDUAL", ""])
        s.send([64, 1, req_id])

    s.spawn(answer())


def req_pnl(s: Session, r: FieldReader) -> None:
    req_id = r.integer()
    pnl = s.server.scenario.account.pnl
    s.send([94, req_id, pnl.daily, pnl.unrealized, pnl.realized])


def req_pnl_single(s: Session, r: FieldReader) -> None:
    req_id = r.integer()
    r.skip(2)  # account, model code
    con_id = r.integer()
    pos = next((p for p in s.server.positions() if p.inst.con_id == con_id), None)
    if pos is None:
        s.send([95, req_id, 0, 0.0, 0.0, 0.0, 0.0])
        return
    mark = s.server.market.mark(pos.inst, s.server.market.now()) * pos.inst.multiplier
    unrealized = (mark - pos.avg_cost) * pos.quantity
    s.send([95, req_id, pos.quantity, unrealized, unrealized, 0.0, mark * pos.quantity])


def ignore(s: Session, r: FieldReader) -> None:
    """Cancels that need no answer (account summary, multi updates, PnL)."""


HANDLERS: dict[int, Handler] = {
    61: req_positions,
    64: cancel_positions,
    6: req_account_updates,
    76: req_account_updates_multi,
    77: ignore,
    62: req_account_summary,
    63: ignore,
    92: req_pnl,
    93: ignore,
    94: req_pnl_single,
    95: ignore,
}
