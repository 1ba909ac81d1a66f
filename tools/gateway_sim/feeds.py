"""Account pushes: account updates (6 -> 6/7/8/54), PnL (92 -> 94), PnL single (94 -> 95).

::

    reqAccountUpdates(1)   -> watch_account(s)          the dump (after account latency),
                                                        then the key values + portfolio
                                                        every account.update_interval_s
    reqPnL(id)             -> watch_pnl(s, id)          94 at once, then every pnl_interval_s
    reqPnLSingle(id, con)  -> watch_pnl(s, id, con)     95 at once, then every pnl_interval_s
    a fill / a settlement  -> changed(pos)              position (61) and portfolio (7) of
                                                        pos, the key values (6), every PnL
    reqAccountUpdates(0), cancelPnL, cancelPnLSingle   -> unwatch: that timer stops

Every timer is a task of its session (cancelled with the connection); intervals are wall
seconds of the sim process, like stream_interval_s and match_interval_s. One push reads one
``Ledger.figures(now)``, so the messages of a push agree with each other to the cent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.codec import FieldValue
from tools.gateway_sim.ledger import AccountFigures
from tools.gateway_sim.positions import Position

if TYPE_CHECKING:
    from tools.gateway_sim.server import SimServer
    from tools.gateway_sim.session import Session

# what IBKR's account window changes as trades happen (the rest stays as the scenario says)
KEY_VALUES = ("NetLiquidation", "TotalCashValue", "AvailableFunds", "RealizedPnL", "UnrealizedPnL")


def value_text(key: str, value: float) -> str:
    """An account value as IBKR writes it: two decimals (NetLiquidation "100000.00"), a count
    of day trades as a whole number (DayTradesRemaining "-1")."""
    if key.startswith("DayTradesRemaining"):
        return f"{value:.0f}"
    return f"{value:.2f}"


def account_values(values: dict[str, float], fig: AccountFigures) -> dict[str, float]:
    """The scenario's account values with the ledger's figures in place (RealizedPnL: today)."""
    merged = dict(values)
    merged.update(
        NetLiquidation=fig.net_liquidation,
        TotalCashValue=fig.cash,
        RealizedPnL=fig.realized_pnl_today,
        UnrealizedPnL=fig.unrealized_pnl,
    )
    if fig.available_funds is not None:
        merged["AvailableFunds"] = fig.available_funds
    return merged


class Feeds:
    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.account_id = server.scenario.account.id
        self.currency = server.scenario.account.currency
        self._account: dict[Session, asyncio.Task[Any]] = {}
        self._pnl: dict[tuple[Session, int], tuple[int | None, asyncio.Task[Any]]] = {}

    def figures(self) -> AccountFigures:
        return self.server.orders.ledger.figures(self.server.market.now())

    # ---- subscriptions ----------------------------------------------------------------------
    def watch_account(self, s: Session) -> None:
        self.unwatch_account(s)
        s.wants_account = True
        self._account[s] = s.spawn(self._account_feed(s))

    def unwatch_account(self, s: Session) -> None:
        s.wants_account = False
        task = self._account.pop(s, None)
        if task is not None:
            task.cancel()

    def watch_pnl(self, s: Session, req_id: int, con_id: int | None = None) -> None:
        """reqPnL (``con_id`` None) or reqPnLSingle: answer at once, then on the timer."""
        self.unwatch_pnl(s, req_id)
        self._pnl[(s, req_id)] = (con_id, s.spawn(self._pnl_feed(s, req_id, con_id)))

    def unwatch_pnl(self, s: Session, req_id: int) -> None:
        entry = self._pnl.pop((s, req_id), None)
        if entry is not None:
            entry[1].cancel()

    def forget(self, s: Session) -> None:
        """The connection ended (its tasks are cancelled with it)."""
        self._account.pop(s, None)
        for key in [k for k in self._pnl if k[0] is s]:
            del self._pnl[key]

    # ---- timers -----------------------------------------------------------------------------
    async def _account_feed(self, s: Session) -> None:
        await s.delay("account")
        self._send_account(s, self.figures(), None)
        s.send([54, 1, self.account_id])  # accountDownloadEnd: the dump is complete
        interval = self.server.scenario.account.update_interval_s
        while True:
            await asyncio.sleep(interval)
            self._send_account(s, self.figures(), KEY_VALUES)

    def _send_account(self, s: Session, fig: AccountFigures, keys: tuple[str, ...] | None) -> None:
        """Values, every open position's portfolio row (marks move), the account time."""
        self._send_values(s, fig, keys)
        for row in fig.positions:
            if row.quantity:
                s.send(self._portfolio(row.con_id, fig))
        self._send_time(s, fig)

    async def _pnl_feed(self, s: Session, req_id: int, con_id: int | None) -> None:
        interval = self.server.scenario.account.pnl_interval_s
        while True:
            s.send(self._pnl_message(req_id, con_id, self.figures()))
            await asyncio.sleep(interval)

    # ---- after a fill or a settlement -------------------------------------------------------
    def changed(self, pos: Position) -> None:
        """Tell every subscriber: the position, its portfolio row, the key values, PnL."""
        watching = [s for s in self.server.clients.values() if s.wants_positions or s.wants_account]
        if not watching and not self._pnl:
            return  # nobody listens: skip marking every position
        fig = self.figures()
        for s in watching:
            if s.wants_positions:
                s.send(out.position(self.account_id, pos.inst, pos.quantity, pos.avg_cost))
            if s.wants_account:
                s.send(self._portfolio(pos.inst.con_id, fig))
                self._send_values(s, fig, KEY_VALUES)
                self._send_time(s, fig)
        for (s, req_id), (con_id, _task) in self._pnl.items():
            s.send(self._pnl_message(req_id, con_id, fig))

    # ---- messages ---------------------------------------------------------------------------
    def _send_values(self, s: Session, fig: AccountFigures, keys: tuple[str, ...] | None) -> None:
        """Account values (6): ``keys`` only, or (None) the whole dump with the header rows."""
        values = account_values(self.server.scenario.account.values, fig)
        rows = [
            (k, value_text(k, v), self.currency)
            for k, v in values.items()
            if keys is None or k in keys
        ]
        if keys is None:
            rows = [
                ("AccountCode", self.account_id, ""),
                ("AccountType", "INDIVIDUAL", ""),
                ("Currency", self.currency, self.currency),
                *rows,
            ]
        for key, text, currency in rows:
            s.send([6, 2, key, text, currency, self.account_id])

    def _send_time(self, s: Session, fig: AccountFigures) -> None:
        s.send([8, 1, self.server.clock.local(fig.ts).strftime("%H:%M")])

    def _portfolio(self, con_id: int, fig: AccountFigures) -> list[FieldValue]:
        pos = self.server.orders.positions[con_id]
        row = fig.position(con_id)
        assert row is not None  # figures list every position the book holds
        return out.portfolio(
            self.account_id, pos.inst, row.quantity, row.mark, row.avg_cost, row.realized_pnl_today
        )

    @staticmethod
    def _pnl_message(req_id: int, con_id: int | None, fig: AccountFigures) -> list[FieldValue]:
        if con_id is None:
            return [94, req_id, fig.daily_pnl, fig.unrealized_pnl, fig.realized_pnl_today]
        row = fig.position(con_id)
        if row is None:  # never held: IBKR answers zeros too
            return [95, req_id, 0.0, 0.0, 0.0, 0.0, 0.0]
        return [
            95,
            req_id,
            row.quantity,
            row.daily_pnl,
            row.unrealized_pnl,
            row.realized_pnl_today,
            row.market_value,
        ]
