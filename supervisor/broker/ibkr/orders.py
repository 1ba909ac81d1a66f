"""The order layer: the account, what-if checks, brackets, and what the account holds.

Account values, open orders, fills and positions are read from the state ib_insync keeps
current from its subscriptions since connect: no request is sent for them. What-if and
bracket orders go to the account this login trades for (named, configured, or the only one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from common.config import IBKRSettings
from common.messages import OptionContract, OrderIntent
from supervisor.broker.base import (
    AccountSnapshot,
    BrokerError,
    BrokerPosition,
    EntriesStopped,
    Fill,
    OpenOrder,
    OrderRejected,
    PlacedBracket,
    SymbolDataError,
    WhatIf,
)
from supervisor.broker.ibkr.client import NAN, ibi, num
from supervisor.broker.ibkr.contracts import Contracts
from supervisor.broker.ibkr.link import Link
from supervisor.broker.ibkr.requests import Requests, listed

# The adapter's one logger, as before it was split into layers: log filters keep working.
log = logging.getLogger("supervisor.broker.ibkr.broker")
# IBKR ocaType: 1 cancel the rest, 2 reduce the rest by the fill (with block), 3 reduce, no block
OCA_REDUCE_WITH_BLOCK = 2
ACCEPTED = frozenset({"PreSubmitted", "Submitted", "Filled"})


class Orders:
    """Orders and account state over one link; see the module docstring."""

    def __init__(
        self,
        link: Link,
        requests: Requests,
        contracts: Contracts,
        cfg: IBKRSettings,
        *,
        now: Callable[[], float],
    ) -> None:
        self._link = link
        self._requests = requests
        self._contracts = contracts
        self._cfg = cfg
        self._now = now
        # permIds the last reqAllOpenOrders listed: ib_insync keeps other client ids' orders
        # only as last seen (their later fills and cancels never reach us), so those count as
        # open only while IBKR still lists them
        self._listed: frozenset[int] | None = None
        self.entries_stopped = False  # set by a stop: no bracket leaves after it

    async def account(self) -> AccountSnapshot:
        """From the account updates ib_insync keeps current since connect (no request), with
        the account's P&L today from a reqPnL subscription (made again after a reconnect)."""
        self._link.require_connected()
        account = self._order_account("", strict=False) or self._cfg.account
        values = {(v.tag, v.account): v for v in self._link.ib.accountValues()}
        # the configured account only: another one's equity would size and guard this one
        wanted = (
            [self._cfg.account]
            if self._cfg.account
            else [a for a in (account, *self._link.accounts) if a]
        )
        for acct in wanted:
            net = values.get(("NetLiquidation", acct))
            funds = values.get(("AvailableFunds", acct))
            if net is not None:
                daily, realized, unrealized = await self._pnl(acct)
                return AccountSnapshot(
                    acct,
                    num(net.value),
                    num(funds.value) if funds else NAN,
                    net.currency or "USD",
                    daily,
                    realized,
                    unrealized,
                )
        raise SymbolDataError(f"no account values received for {wanted or 'any account'}")

    async def _pnl(self, account: str) -> tuple[float, float, float]:
        """(daily, realized, unrealized) of the account; NaN until IBKR has sent them."""
        subscribed = [p for p in self._link.ib.pnl(account) if not p.modelCode]
        if not subscribed:
            await self._link.pace(1)
            self._link.ib.reqPnL(account)
            return NAN, NAN, NAN
        pnl = subscribed[0]
        return num(pnl.dailyPnL), num(pnl.realizedPnL), num(pnl.unrealizedPnL)

    def _order_account(self, account: str, strict: bool = True) -> str:
        accounts = self._link.accounts
        if account:
            if accounts and account not in accounts:
                raise BrokerError(f"account {account} is not one of this login's {accounts}")
            return account
        if self._cfg.account and self._cfg.account in accounts:
            return self._cfg.account
        if len(accounts) == 1:
            return accounts[0]
        if strict and accounts:
            raise BrokerError(f"several accounts {accounts}: name the one to use")
        return ""

    # --- orders ------------------------------------------------------------------------------

    async def what_if(
        self, contract: OptionContract, action: str, quantity: int, limit: float
    ) -> WhatIf:
        """IBKR's margin check for a limit order: margin changes and commission."""
        qualified = await self._contracts.tradable(contract)
        order = ibi.LimitOrder(
            action,
            quantity,
            limit,
            whatIf=True,
            tif="DAY",
            account=self._order_account("", strict=False),
        )

        def send(req_id: int) -> None:
            order.orderId = req_id
            self._link.ib.client.placeOrder(req_id, qualified, order)

        state = await self._requests.request(
            f"what-if {action} {quantity} {contract.key}",
            send,
            self._cfg.request_timeout_s,
            contract=qualified,
        )
        return WhatIf(
            init_margin_change=num(state.initMarginChange),
            maint_margin_change=num(state.maintMarginChange),
            commission=num(state.commission),
            equity_with_loan_change=num(state.equityWithLoanChange),
            init_margin_after=num(state.initMarginAfter),
            maint_margin_after=num(state.maintMarginAfter),
        )

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        """Parent BUY limit (DAY, not transmitted), take-profit SELL limit and stop SELL (both
        GTC: a multi-day hold keeps its exits), one OCA group of type 2, orderRef = intent id;
        the stop's transmit sends all three. Returns the ids.

        OCA type 2 reduces the other exit by what one exit filled (type 1 would cancel it on
        the first partial fill and leave the rest unprotected): the stop always covers exactly
        what is still held."""
        if quantity < 1:
            raise BrokerError(f"bracket {intent.intent_id}: quantity {quantity} < 1")
        acct = self._order_account(account)
        contract = await self._contracts.tradable(intent.contract)
        await self._link.pace(3)
        if self.entries_stopped:  # the last moment: from here to the write nothing awaits
            raise EntriesStopped(f"bracket {intent.intent_id} not sent: a stop was asked for")
        parent_id, tp_id, sl_id = (self._link.new_req_id() for _ in range(3))
        common = {"orderRef": intent.intent_id, "account": acct}
        oca = {
            "ocaGroup": f"oca-{intent.intent_id}",
            "ocaType": OCA_REDUCE_WITH_BLOCK,
            "parentId": parent_id,
            "tif": "GTC",
        }
        orders = [
            ibi.LimitOrder(
                "BUY",
                quantity,
                intent.entry_limit,
                orderId=parent_id,
                transmit=False,
                tif="DAY",
                **common,
            ),
            ibi.LimitOrder(
                "SELL", quantity, intent.take_profit, orderId=tp_id, transmit=False, **common, **oca
            ),
            ibi.StopOrder(
                "SELL", quantity, intent.stop_loss, orderId=sl_id, transmit=True, **common, **oca
            ),
        ]
        trades = [self._link.ib.placeOrder(contract, order) for order in orders]
        await self._fate(intent.intent_id, trades)
        parent_perm, tp_perm, sl_perm = (int(t.order.permId) for t in trades)
        placed = PlacedBracket((parent_id, tp_id, sl_id), (parent_perm, tp_perm, sl_perm))
        log.info(
            "bracket %s accepted: %s (permIds %s)",
            intent.intent_id,
            list(placed.order_ids),
            list(placed.perm_ids),
        )
        return placed

    async def _fate(self, ref: str, trades: list[Any]) -> None:
        """Wait (bounded) until the gateway accepted every order of the bracket or refused one.
        An order that once worked (PreSubmitted/Submitted/Filled in its log) was accepted,
        whatever happened next (an OCA sibling's fill cancels it); one Cancelled or Inactive
        without ever working was refused, with the error in its log. A refusal takes the
        whole bracket down: every part is cancelled at IBKR, whatever ib_insync believes of
        it (it marks an order Cancelled on any error code it does not know as a warning, while
        IBKR may still work it); the live book keeps looking for the orderRef after that."""
        deadline = asyncio.get_running_loop().time() + self._cfg.request_timeout_s
        while True:
            refused = [
                t
                for t in trades
                if t.orderStatus.status in ("Cancelled", "Inactive") and not _worked(t)
            ]
            if refused:
                errors = [e for t in refused for e in t.log if e.errorCode]
                code = errors[0].errorCode if errors else 0
                text = errors[0].message if errors else refused[0].orderStatus.status
                for trade in trades:
                    if trade.orderStatus.status != "Filled":
                        self._link.ib.client.cancelOrder(trade.order.orderId, "")
                raise OrderRejected(
                    f"bracket {ref} refused: {text}",
                    code,
                    [t.order.orderId for t in trades],
                    filled=any(t.orderStatus.filled for t in trades),
                )
            if all(_worked(t) and t.order.permId for t in trades):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerError(
                    f"bracket {ref}: no answer from the gateway within "
                    f"{self._cfg.request_timeout_s:g}s; its fate is unknown "
                    "(it is followed by orderRef)"
                )
            await asyncio.sleep(0.02)

    async def place_order(
        self,
        contract: OptionContract,
        action: str,
        quantity: int,
        limit: float,
        account: str,
        order_ref: str,
    ) -> int:
        """One DAY limit order (an exit before expiry); returns its id."""
        if quantity < 1:
            raise BrokerError(f"order {order_ref}: quantity {quantity} < 1")
        acct = self._order_account(account)
        qualified = await self._contracts.tradable(contract)
        await self._link.pace(1)
        order_id = self._link.new_req_id()
        self._link.ib.placeOrder(
            qualified,
            ibi.LimitOrder(
                action,
                quantity,
                limit,
                orderId=order_id,
                tif="DAY",
                orderRef=order_ref,
                account=acct,
            ),
        )
        log.info(
            "order %s placed: %s %d x %s @ %.2f", order_ref, action, quantity, contract.key, limit
        )
        return order_id

    async def cancel_order(self, order_id: int) -> None:
        trades = [
            t
            for t in self._link.ib.openTrades()
            if t.order.orderId == order_id and t.order.clientId in (0, self._link.client_id)
        ]
        order = trades[0].order if trades else ibi.Order(orderId=order_id)
        foreign = [
            t
            for t in self._link.ib.openTrades()
            if t.order.orderId == order_id and t.order.clientId not in (0, self._link.client_id)
        ]
        if foreign and not trades:
            raise BrokerError(
                f"order {order_id} was placed by client id {foreign[0].order.clientId}, this "
                f"connection is client id {self._link.client_id}: IBKR lets only the placing "
                "client id cancel it; reconnect with that ibkr.client_id or cancel it in TWS"
            )
        await self._link.pace(1)
        self._link.ib.cancelOrder(order)

    async def refresh_orders(self) -> None:
        """Every open order of the account (all client ids) and today's executions."""
        self._link.require_connected()
        await self._link.pace(2)
        timeout_s = self._cfg.request_timeout_s
        trades = await listed("open orders", self._link.ib.reqAllOpenOrdersAsync(), timeout_s)
        self._listed = frozenset(t.order.permId for t in trades if t.order.permId)
        await listed("executions", self._link.ib.reqExecutionsAsync(), timeout_s)

    # --- what the account holds --------------------------------------------------------------

    def open_orders(self) -> list[OpenOrder]:
        return [
            OpenOrder(
                order_id=t.order.orderId,
                order_ref=t.order.orderRef,
                status=t.orderStatus.status,
                action=t.order.action,
                quantity=float(t.order.totalQuantity),
                order_type=t.order.orderType,
                symbol=t.contract.symbol,
                sec_type=t.contract.secType,
                expiry=t.contract.lastTradeDateOrContractMonth,
                strike=float(t.contract.strike),
                right=t.contract.right,
                limit=num(t.order.lmtPrice),
                aux=num(t.order.auxPrice),
                perm_id=t.order.permId,
                parent_id=t.order.parentId,
                oca_group=t.order.ocaGroup,
                account=t.order.account,
                filled=float(t.orderStatus.filled),
                client_id=t.order.clientId,
                multiplier=int(t.contract.multiplier or 1) if t.contract.secType != "STK" else 1,
            )
            for t in self._open_trades()
        ]

    def _open_trades(self) -> list[Any]:
        """ib_insync's open trades, less other client ids' that IBKR no longer lists."""
        own = (0, self._link.client_id)
        return [
            t
            for t in self._link.ib.openTrades()
            if t.order.clientId in own or self._listed is None or t.order.permId in self._listed
        ]

    def fills(self) -> list[Fill]:
        """This session's executions (IBKR replays the day's on reconnect), each at its own
        time as IBKR stamped it: ib_insync's ``Fill.time`` of a live execution is when the
        library received it, on this machine's wall clock (only a reqExecutions reply carries
        the execution's time there), and a trade's day is the session's, not the machine's."""
        return [
            Fill(
                exec_id=f.execution.execId,
                order_id=f.execution.orderId,
                order_ref=f.execution.orderRef,
                side=f.execution.side,
                shares=float(f.execution.shares),
                price=float(f.execution.price),
                ts=self._executed_at(f.execution),
                # ib_insync keeps an empty report until IBKR's arrives (after the fill)
                commission=(
                    num(f.commissionReport.commission) if f.commissionReport.execId else None
                ),
                perm_id=f.execution.permId,
            )
            for f in self._link.ib.fills()
        ]

    def _executed_at(self, execution: Any) -> float:
        """The execution's time (the decoder parses IBKR's "20261204 15:40:12 US/Eastern",
        or a zoneless time in the TWS zone, into an aware UTC datetime); the session clock
        the broker was given when it carries none (the library's default is the epoch)."""
        when = getattr(execution, "time", None)
        ts = when.timestamp() if isinstance(when, datetime) else 0.0
        return ts if ts > 0 else self._now()

    def positions(self) -> list[BrokerPosition]:
        """The account's positions; the price each is marked at, from the portfolio updates
        (NaN until IBKR has sent one)."""
        marks = {(i.account, i.contract.conId): i.marketPrice for i in self._link.ib.portfolio()}
        return [
            BrokerPosition(
                account=p.account,
                symbol=p.contract.symbol,
                sec_type=p.contract.secType,
                quantity=float(p.position),
                avg_cost=float(p.avgCost),
                con_id=p.contract.conId,
                expiry=p.contract.lastTradeDateOrContractMonth,
                strike=float(p.contract.strike),
                right=p.contract.right,
                market_price=num(marks.get((p.account, p.contract.conId))),
            )
            for p in self._link.ib.positions()
        ]


def _worked(trade: Any) -> bool:
    """The gateway accepted this order at some point (its status log says so)."""
    return trade.orderStatus.status in ACCEPTED or any(e.status in ACCEPTED for e in trade.log)
