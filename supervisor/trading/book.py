"""The paper book of dry-run and what-if modes: positions driven to their exits each cycle.

    drive(now):  positions past their expiry's close -> settle at intrinsic value from the
                 underlying's regular-session close (broker.closing_price), once it is known,
                 booked at that close on the expiry's own day (a bot that was not running
                 then never books yesterday's settlement as today's loss)
                 the others -> one option snapshot each -> paper.step: fills, take-profit,
                 stop-loss, and from the exit time (expiry close - risk.exit_before_expiry_min)
                 a sale at the bid
    open(intent) a pending entry for an accepted intent

The rules are pure (``supervisor/trading/paper.py``); this module only fetches what they need
and journals every move, so a restart picks the book up where it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from common.calendar import expiry_close, parse_expiry
from common.messages import OrderIntent
from supervisor.broker.base import Broker, BrokerError
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.paper import flatten, open_from, settle, step
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.trading.book")


class PaperBook:
    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        sessions: SessionBook,
        entry_timeout_s: float,
        exit_before_expiry_min: float,
        on_close: Callable[[Position], None],
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.sessions = sessions
        self.entry_timeout_s = entry_timeout_s
        self.exit_before_s = exit_before_expiry_min * 60
        self.on_close = on_close  # logs and alerts a position that changed status
        self.positions: dict[str, Position] = {p.intent_id: p for p in journal.open_positions()}
        self._waiting: set[str] = set()  # settlements waiting for the close: said once

    def active(self) -> list[Position]:
        return [p for p in self.positions.values() if p.active]

    def open(self, intent: OrderIntent, quantity: int, now_ts: float, day: str) -> None:
        position = open_from(intent, quantity, now_ts)
        self.positions[intent.intent_id] = position
        self.journal.save_position(position, day)

    def keep(self, positions: list[Position]) -> None:
        """A new day: the book holds the given positions only (older closed ones are done)."""
        self.positions = {p.intent_id: p for p in positions}

    async def drive(self, now_ts: float, day: str, only_due: bool = False) -> None:
        """Settle what the expiry caught, then mark and step everything else; ``only_due``:
        only positions whose exit time (or close) has come (the expiry guard's run)."""
        active = self.active()
        if not active:
            return
        closes = {p.intent_id: await self._close_of(p, now_ts) for p in active}
        if only_due:
            active = [p for p in active if now_ts >= closes[p.intent_id] - self.exit_before_s]
        for p in active:
            if now_ts >= closes[p.intent_id]:
                await self._settle(p, closes[p.intent_id])
        marked = [p for p in active if now_ts < closes[p.intent_id]]
        if marked:
            await self._step(marked, closes, now_ts, day)

    async def flatten(self, now_ts: float, day: str) -> list[Position]:
        """Every active position out at once (the trader's flatten): pending entries
        cancelled, open ones sold at the bid; what is left for want of a bid is returned."""
        active = self.active()
        if not active:
            return []
        try:
            quotes = await self.broker.option_quotes(tuple({p.contract for p in active}))
        except BrokerError as exc:
            log.warning("flatten: no quotes for %d positions: %s", len(active), exc)
            quotes = ()
        by_key = {q.contract.key: q for q in quotes}
        for p in active:
            self._save(p, flatten(p, by_key.get(p.contract.key), now_ts), day)
        return self.active()

    async def _close_of(self, p: Position, now_ts: float) -> float:
        close = await self.sessions.expiry_close(p.symbol, p.contract.expiry, now_ts)
        fallback = expiry_close(p.contract.expiry)  # 16:00 New York on the expiry date
        return close if close is not None else fallback if fallback is not None else 0.0

    async def _step(
        self, marked: list[Position], closes: dict[str, float], now_ts: float, day: str
    ) -> None:
        try:
            quotes = await self.broker.option_quotes(tuple({p.contract for p in marked}))
        except BrokerError as exc:
            log.warning("could not mark %d positions: %s", len(marked), exc)
            return
        by_key = {q.contract.key: q for q in quotes}
        for p in marked:
            exit_at = closes[p.intent_id] - self.exit_before_s
            self._save(
                p,
                step(
                    p, by_key.get(p.contract.key), now_ts, self.entry_timeout_s, exit_at_ts=exit_at
                ),
                day,
            )

    async def _settle(self, p: Position, close_ts: float) -> None:
        """At intrinsic value, as of the expiry's close and on its day, whenever it runs."""
        expiry_day = parse_expiry(p.contract.expiry)
        price = None
        if expiry_day is not None:
            try:
                price = await self.broker.closing_price(p.symbol, expiry_day)
            except BrokerError as exc:
                log.warning("closing price of %s on %s: %s", p.symbol, expiry_day, exc)
        if price is None:
            if p.intent_id not in self._waiting:
                self._waiting.add(p.intent_id)
                log.warning(
                    "%s is past its expiry's close: settles once the close of %s on %s is known",
                    p.contract.key,
                    p.symbol,
                    expiry_day,
                    extra={"event": "settlement_waiting", "intent_id": p.intent_id},
                )
            return
        self._waiting.discard(p.intent_id)
        log.info(
            "%s settles at intrinsic value from %s's close %.2f",
            p.contract.key,
            p.symbol,
            price,
            extra={"event": "settlement", "intent_id": p.intent_id, "underlying_close": price},
        )
        day = self.sessions.day_of(close_ts).isoformat()
        self._save(p, settle(p, price, close_ts), day)

    def _save(self, before: Position, after: Position, day: str) -> None:
        if after == before:
            return
        self.positions[after.intent_id] = after
        self.journal.save_position(after, day)
        if after.status != before.status:
            self.on_close(after)
