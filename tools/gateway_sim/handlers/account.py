"""Account requests: positions, account updates (single and multi), summary, PnL.

Figures come from the ledger (ledger.py: cash, NetLiquidation, AvailableFunds, P&L follow the
fills); the other values from the scenario's ``account.values``. Account updates, PnL and PnL
single are subscriptions pushed by feeds.py until cancelled; multi updates and the summary are
answered once from the ledger of that moment. All of these end with their End message so
``IB.connectAsync`` completes at once.
"""

from __future__ import annotations

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.codec import FieldReader
from tools.gateway_sim.feeds import account_values, value_text
from tools.gateway_sim.session import Handler, Session


def req_positions(s: Session, r: FieldReader) -> None:
    s.wants_positions = True
    account = s.server.scenario.account.id
    for pos in s.server.positions():
        s.send(out.position(account, pos.inst, pos.quantity, pos.avg_cost))
    s.send([62, 1])


def cancel_positions(s: Session, r: FieldReader) -> None:
    s.wants_positions = False


def _values(s: Session) -> dict[str, float]:
    return account_values(s.server.scenario.account.values, s.server.feeds.figures())


def req_account_updates(s: Session, r: FieldReader) -> None:
    r.skip()
    if r.flag():
        s.server.feeds.watch_account(s)
    else:
        s.server.feeds.unwatch_account(s)


def req_account_updates_multi(s: Session, r: FieldReader) -> None:
    r.skip()
    req_id = r.integer()
    account = r.text() or s.server.scenario.account.id
    model_code = r.text()
    currency = s.server.scenario.account.currency

    async def answer() -> None:
        await s.delay("account")
        rows = [
            ("AccountCode", account, ""),
            ("AccountType", "INDIVIDUAL", ""),
            ("Currency", currency, currency),
        ]
        rows += [(k, value_text(k, v), currency) for k, v in _values(s).items()]
        for key, value, ccy in rows:
            s.send([73, 1, req_id, account, model_code, key, value, ccy])
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
        for key, value in _values(s).items():
            if not tags or key in tags:
                s.send([63, 1, req_id, acct.id, key, value_text(key, value), acct.currency])
        if not tags or "AccountType" in tags:
            s.send([63, 1, req_id, acct.id, "AccountType", "INDIVIDUAL", ""])
        s.send([64, 1, req_id])

    s.spawn(answer())


def req_pnl(s: Session, r: FieldReader) -> None:
    s.server.feeds.watch_pnl(s, r.integer())  # account, model code: the sim has one account


def cancel_pnl(s: Session, r: FieldReader) -> None:
    s.server.feeds.unwatch_pnl(s, r.integer())


def req_pnl_single(s: Session, r: FieldReader) -> None:
    req_id = r.integer()
    r.skip(2)  # account, model code
    s.server.feeds.watch_pnl(s, req_id, r.integer())


def ignore(s: Session, r: FieldReader) -> None:
    """Cancels that need no answer (account summary, multi updates)."""


HANDLERS: dict[int, Handler] = {
    61: req_positions,
    64: cancel_positions,
    6: req_account_updates,
    76: req_account_updates_multi,
    77: ignore,
    62: req_account_summary,
    63: ignore,
    92: req_pnl,
    93: cancel_pnl,
    94: req_pnl_single,
    95: cancel_pnl,
}
