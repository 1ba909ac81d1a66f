"""A Broker that records what the broker it wraps answered, then answers the same.

Sits at the broker boundary (every market answer the supervisor gives its workers, and every
order the desk sends, passes through it), so recording needs nothing of the code above it.
Each answer becomes a row of recording/format.py's kind, stamped with the session clock; a
failure is recorded with its error and raised unchanged. What is only passed through
(connection, managed accounts, open orders, positions, completed orders, stats) is not
recorded: a replay trades on the paper book.

The recorder never fails, delays or changes a broker call: its own work after an answer (the
row, the bars' encoding, the writer) is guarded, and whatever it raises switches the
recording off (``recording_off``); the answer or the broker's own exception reaches the
caller as the wrapped broker gave it (an order placed at IBKR is never reported failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import date
from typing import Any, TypeVar

from common.calendar import TradingHours
from common.messages import Bars, OptionChain, OptionContract, OptionQuote, OrderIntent, Quote
from supervisor.broker.base import (
    AccountSnapshot,
    Broker,
    BrokerPosition,
    Fill,
    OpenOrder,
    OrderRejected,
    PlacedBracket,
    WhatIf,
)
from supervisor.recording import format as fmt
from supervisor.recording.bars_delta import COLUMNS, BarsEncoder
from supervisor.recording.writer import RecordingWriter

log = logging.getLogger("supervisor.recording")

T = TypeVar("T")
NAN = float("nan")


def recording_off(writer: RecordingWriter, where: str, exc: BaseException) -> None:
    """The recording stops where it is (its rows so far stay on disk; ``writer.failure``
    says why), said once as an ERROR; the run goes on without it."""
    writer.closed = True  # nothing more is buffered
    if writer.failure is not None:
        return  # already off (the writer's own failure, or an earlier one): said then
    writer.failure = f"{where}: {exc!r}"
    log.error(
        "recording %s off, the run goes on without it: %s",
        writer.root,
        writer.failure,
        extra={"event": "recording_failed", "path": str(writer.root)},
    )


def _contract(contract: OptionContract) -> dict[str, Any]:
    return {
        "symbol": contract.symbol,
        "expiry": contract.expiry,
        "strike": contract.strike,
        "right": contract.right.value,
    }


def _option_row(call: int, contract: OptionContract, quote: OptionQuote | None) -> dict[str, Any]:
    row = _contract(contract)
    row.update(
        call=call,
        multiplier=contract.multiplier,
        exchange=contract.exchange,
        trading_class=contract.trading_class,
        answered=quote is not None,
    )
    if quote is not None:
        for name in ("bid", "ask", "last", "volume", "iv", "delta", "gamma", "vega", "theta"):
            row[name] = getattr(quote, name)
        row["und_price"], row["quote_ts"] = quote.und_price, quote.ts
    return row


def _plain(value: Any) -> Any:
    """A dataclass's values as JSON can hold them (enums as their values)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


def _failure(identity: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """The columns of a failed request: the error, and a refused order's code, ids and
    whether a part had filled (added to the detail the request already has)."""
    row: dict[str, Any] = {"error": fmt.error_text(exc)}
    if isinstance(exc, OrderRejected):
        detail = json.loads(identity.get("detail") or "{}")
        detail["rejected_after_fill"] = exc.filled
        row.update(error_code=exc.code, order_ids=list(exc.order_ids), detail=json.dumps(detail))
    return row


class RecordingBroker:
    """``inner`` answers; ``writer`` records; ``now`` is the session clock."""

    def __init__(self, inner: Broker, writer: RecordingWriter, now: Callable[[], float]) -> None:
        self.inner, self.writer, self.now = inner, writer, now
        self.name = inner.name
        self._calls = 0  # option_quotes calls, numbering their rows
        self._bars = BarsEncoder()  # each bar recorded once
        self.busy_s = 0.0  # CPU in recording (the writer's flushes not included)
        self._fills: dict[str, float | None] = {}  # exec id -> commission as recorded

    async def _recorded(
        self,
        kind: str,
        identity: Callable[[], dict[str, Any]],
        ask: Awaitable[T],
        row: Callable[[T], dict[str, Any]],
    ) -> T:
        """``ask``'s answer or exception, as it came; the request's ``identity`` and the
        ``row`` of its answer are built after it, in the recorder's guard."""
        try:
            answer = await ask
        except (Exception, asyncio.CancelledError) as exc:
            # a cancel is the caller giving up (its timeout): recorded, so a replay knows
            with self._busy(kind):
                asked = identity()
                self.writer.add(kind, {"ts": self.now(), **asked, **_failure(asked, exc)})
            raise
        with self._busy(kind):
            self.writer.add(kind, {"ts": self.now(), **identity(), **row(answer)})
        return answer

    @contextlib.contextmanager
    def _busy(self, kind: str) -> Iterator[None]:
        """The recorder's own work on an answer of ``kind``: an exception of it switches the
        recording off and goes no further (the caller gets the broker's answer); this
        thread's CPU in it summed (the benchmark's figure)."""
        began = time.thread_time()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the recorder must never fail a broker call
            recording_off(self.writer, kind, exc)
        finally:
            self.busy_s += time.thread_time() - began

    # --- passed through ----------------------------------------------------------------------

    async def connect(self) -> None:
        await self.inner.connect()

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    def is_connected(self) -> bool:
        return self.inner.is_connected()

    def managed_accounts(self) -> list[str]:
        return self.inner.managed_accounts()

    async def account(self) -> AccountSnapshot:
        def row(a: AccountSnapshot) -> dict[str, Any]:
            return {f.name: getattr(a, f.name) for f in dataclasses.fields(a)}

        return await self._recorded(fmt.ACCOUNT, dict, self.inner.account(), row)

    async def unknown_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        def row(unknown: dict[str, str]) -> dict[str, Any]:
            return {"unknown": list(unknown), "reasons": list(unknown.values())}

        def identity() -> dict[str, Any]:
            return {"symbols": list(symbols)}

        return await self._recorded(
            fmt.CONTRACTS, identity, self.inner.unknown_symbols(symbols), row
        )

    def stop_entries(self) -> None:
        self.inner.stop_entries()

    async def refresh_orders(self) -> None:
        await self.inner.refresh_orders()

    async def completed_refs(self) -> list[str]:
        return await self.inner.completed_refs()

    def open_orders(self) -> list[OpenOrder]:
        return self.inner.open_orders()

    def positions(self) -> list[BrokerPosition]:
        return self.inner.positions()

    def stats(self) -> dict[str, float]:
        return self.inner.stats()

    # --- market data -------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        def row(q: Quote) -> dict[str, Any]:
            return {
                "bid": q.bid,
                "ask": q.ask,
                "last": q.last,
                "close": q.close,
                "bid_size": q.bid_size,
                "ask_size": q.ask_size,
                "volume": q.volume,
                "quote_ts": q.ts,
            }

        identity = {"symbol": symbol}
        return await self._recorded(fmt.QUOTES, identity.copy, self.inner.quote(symbol), row)

    async def bars(
        self, symbol: str, minutes: int, bar_minutes: int = 1, rth: bool = False
    ) -> Bars:
        identity = {"symbol": symbol, "minutes": minutes, "bar_minutes": bar_minutes, "rth": rth}
        try:
            answer = await self.inner.bars(symbol, minutes, bar_minutes, rth)
        except (Exception, asyncio.CancelledError) as exc:
            with self._busy(fmt.BARS):
                self.writer.add(fmt.BARS, {"ts": self.now(), **identity, **_failure(identity, exc)})
            raise
        if not self.writer.closed:  # off: the bars are not even encoded
            with self._busy(fmt.BARS):
                self._record_bars(identity, answer)
        return answer

    def _record_bars(self, identity: dict[str, Any], answer: Bars) -> None:
        ts, number = self.now(), self.writer.rows[fmt.BARS]  # this answer's row
        symbol, size, rth = identity["symbol"], identity["bar_minutes"], identity["rth"]
        row, new = self._bars.encode((symbol, size, rth), answer)
        count = len(new[0])  # bars not recorded before (most answers: the newest one)
        if count:
            same = {"ts": ts, "answer": number, "symbol": symbol, "bar_minutes": size, "rth": rth}
            constant = {name: [value] * count for name, value in same.items()}
            values = dict(zip(COLUMNS, new, strict=True))
            self.writer.extend(fmt.BAR_VALUES, count, {**constant, **values})
        self.writer.add(fmt.BARS, {"ts": ts, **identity, **row})

    async def chain(self, symbol: str) -> OptionChain:
        def row(c: OptionChain) -> dict[str, Any]:
            return {
                "expirations": list(c.expirations),
                "strikes": list(c.strikes),
                "multiplier": c.multiplier,
                "exchange": c.exchange,
                "trading_class": c.trading_class,
            }

        identity = {"symbol": symbol}
        return await self._recorded(fmt.CHAINS, identity.copy, self.inner.chain(symbol), row)

    async def option_quotes(self, contracts: Sequence[OptionContract]) -> tuple[OptionQuote, ...]:
        self._calls += 1
        call = self._calls
        try:
            answer = await self.inner.option_quotes(contracts)
        except (Exception, asyncio.CancelledError) as exc:
            with self._busy(fmt.OPTION_QUOTES):
                error, ts = fmt.error_text(exc), self.now()
                for contract in contracts:
                    row = _option_row(call, contract, None)
                    self.writer.add(fmt.OPTION_QUOTES, {**row, "ts": ts, "error": error})
            raise
        with self._busy(fmt.OPTION_QUOTES):
            ts = self.now()
            by_contract = {q.contract: q for q in answer}
            for contract in contracts:
                row = _option_row(call, contract, by_contract.get(contract))
                self.writer.add(fmt.OPTION_QUOTES, {**row, "ts": ts})
        return answer

    async def regular_hours(self, symbol: str) -> TradingHours | None:
        def row(hours: TradingHours | None) -> dict[str, Any]:
            if hours is None:
                return {}
            return {
                "session_start": [a for a, _ in hours.sessions],
                "session_end": [b for _, b in hours.sessions],
                "days": sorted(d.isoformat() for d in hours.days),
                "zone": hours.zone.key,
            }

        def identity() -> dict[str, Any]:
            return {"kind": fmt.HOURS_REGULAR, "symbol": symbol}

        return await self._recorded(fmt.HOURS, identity, self.inner.regular_hours(symbol), row)

    async def closing_price(self, symbol: str, day: date) -> float | None:
        def identity() -> dict[str, Any]:
            return {"kind": fmt.HOURS_CLOSE, "symbol": symbol, "day": day.isoformat()}

        ask = self.inner.closing_price(symbol, day)
        return await self._recorded(fmt.HOURS, identity, ask, lambda c: {"close": c})

    # --- orders ------------------------------------------------------------------------------

    async def what_if(
        self, contract: OptionContract, action: str, quantity: int, limit: float
    ) -> WhatIf:
        def identity() -> dict[str, Any]:
            return {
                "event": fmt.EV_WHAT_IF,
                **_contract(contract),
                "action": action,
                "quantity": float(quantity),
                "order_type": "LMT",
                "limit": limit,
            }

        ask = self.inner.what_if(contract, action, quantity, limit)
        return await self._recorded(
            fmt.ORDERS, identity, ask, lambda w: {"detail": json.dumps(_plain(w))}
        )

    async def place_bracket(
        self, intent: OrderIntent, quantity: int, account: str
    ) -> PlacedBracket:
        def identity() -> dict[str, Any]:
            return {
                "event": fmt.EV_BRACKET,
                **_contract(intent.contract),
                "action": intent.action,
                "quantity": float(quantity),
                "order_type": "bracket",
                "limit": intent.entry_limit,
                "account": account,
                "order_ref": intent.intent_id,
                "detail": json.dumps(_plain(intent)),
            }

        def row(placed: PlacedBracket) -> dict[str, Any]:
            ids = list(placed.order_ids)
            return {"order_id": ids[0], "order_ids": ids, "perm_ids": list(placed.perm_ids)}

        ask = self.inner.place_bracket(intent, quantity, account)
        return await self._recorded(fmt.ORDERS, identity, ask, row)

    async def place_order(
        self,
        contract: OptionContract,
        action: str,
        quantity: int,
        limit: float,
        account: str,
        order_ref: str,
    ) -> int:
        def identity() -> dict[str, Any]:
            return {
                "event": fmt.EV_ORDER,
                **_contract(contract),
                "action": action,
                "quantity": float(quantity),
                "order_type": "LMT",
                "limit": limit,
                "account": account,
                "order_ref": order_ref,
            }

        ask = self.inner.place_order(contract, action, quantity, limit, account, order_ref)
        return await self._recorded(
            fmt.ORDERS, identity, ask, lambda i: {"order_id": i, "order_ids": [i]}
        )

    async def place_stock_order(
        self, symbol: str, action: str, quantity: int, limit: float, account: str, order_ref: str
    ) -> int:
        def identity() -> dict[str, Any]:
            return {
                "event": fmt.EV_STOCK,
                "symbol": symbol,
                "action": action,
                "quantity": float(quantity),
                "order_type": "LMT",
                "limit": limit,
                "account": account,
                "order_ref": order_ref,
            }

        ask = self.inner.place_stock_order(symbol, action, quantity, limit, account, order_ref)
        return await self._recorded(
            fmt.ORDERS, identity, ask, lambda i: {"order_id": i, "order_ids": [i]}
        )

    async def place_exit(
        self,
        contract: OptionContract,
        order_type: str,
        quantity: int,
        price: float,
        account: str,
        order_ref: str,
        oca_group: str,
    ) -> tuple[int, int]:
        def identity() -> dict[str, Any]:
            return {
                "event": fmt.EV_EXIT,
                **_contract(contract),
                "action": "SELL",
                "quantity": float(quantity),
                "order_type": order_type,
                "limit": price,
                "account": account,
                "order_ref": order_ref,
                "oca_group": oca_group,
            }

        def row(ids: tuple[int, int]) -> dict[str, Any]:
            return {"order_id": ids[0], "order_ids": [ids[0]], "perm_ids": [ids[1]]}

        ask = self.inner.place_exit(
            contract, order_type, quantity, price, account, order_ref, oca_group
        )
        return await self._recorded(fmt.ORDERS, identity, ask, row)

    async def cancel_order(self, order_id: int) -> None:
        def identity() -> dict[str, Any]:
            return {"event": fmt.EV_CANCEL, "order_id": order_id}

        await self._recorded(fmt.ORDERS, identity, self.inner.cancel_order(order_id), lambda _: {})

    def fills(self) -> list[Fill]:
        """The venue's executions; each new one (or one whose commission came) recorded."""
        fills = self.inner.fills()
        with self._busy(fmt.ORDERS):
            for fill in fills:
                if fill.exec_id in self._fills and self._fills[fill.exec_id] == fill.commission:
                    continue
                self._fills[fill.exec_id] = fill.commission
                self.writer.add(fmt.ORDERS, self._fill_row(fill))
        return fills

    def _fill_row(self, fill: Fill) -> dict[str, Any]:
        return {
            "ts": self.now(),
            "event": fmt.EV_FILL,
            "quantity": fill.shares,
            "order_ref": fill.order_ref,
            "order_id": fill.order_id,
            "perm_ids": [fill.perm_id],
            "exec_id": fill.exec_id,
            "side": fill.side,
            "price": fill.price,
            "fill_ts": fill.ts,
            "commission": NAN if fill.commission is None else fill.commission,
        }
