"""The position book of dry-run and what-if modes: the paper book, as the desk sees it.

    value      the paper book driven to now (fills, take-profit, stop-loss, exits, settlement:
               book.py), then the account's equity with the book's P&L of the day
    entry_id   a re-entry after a paper position closed gets the next id, <id>.2, <id>.3 ...
    opened     an accepted intent (simulated or checked) opens a pending paper position
    held       the book's active positions: contracts by underlying and their premium

Nothing here talks to an order book at the broker: the broker gives quotes and closes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from common.messages import OrderIntent
from supervisor.broker.base import AccountSnapshot
from supervisor.journal.records import Position
from supervisor.trading.book import PaperBook
from supervisor.trading.execution import Execution
from supervisor.trading.live_reconcile import Reconciliation
from supervisor.trading.paper import book_pnl
from supervisor.trading.position_book import (
    Candidate,
    DeskSide,
    Valuation,
    count_held,
    transition,
)

OPENS = ("simulated", "checked")  # the gate's statuses after which a paper position opens


class PaperPositions:
    def __init__(self, desk: DeskSide) -> None:
        self.desk = desk
        settings = desk.settings
        self.reenter = settings.risk.reenter_after_close
        self.book = PaperBook(
            desk.broker,
            desk.journal,
            desk.sessions,
            settings.execution.entry_timeout_s,
            settings.risk.exit_before_expiry_min,
            lambda p: transition(p, desk.alerter, desk.settings.execution.mode),
        )

    @property
    def positions(self) -> Mapping[str, Position]:
        return self.book.positions

    def _day_of(self, ts: float) -> str:
        return self.desk.sessions.day_of(ts).isoformat()

    def _today(self, day: str) -> list[Position]:
        return [
            p
            for p in self.book.positions.values()
            if p.active or (p.closed_ts is not None and self._day_of(p.closed_ts) == day)
        ]

    async def start(self, now_ts: float) -> Reconciliation | None:
        return None  # nothing at a broker to reconcile: the journal is the whole book

    def new_day(self, day: str) -> None:
        # positions closed on earlier days live on in the journal only
        self.book.keep(self._today(day))
        for p in self.desk.journal.positions(day):
            self.book.positions.setdefault(p.intent_id, p)

    async def value(self, account: AccountSnapshot, now_ts: float, day: str) -> Valuation:
        await self.book.drive(now_ts, day)
        realized, unrealized = book_pnl(self._today(day))
        return Valuation(account.net_liquidation + (realized + unrealized), None)

    async def follow(self, now_ts: float, halted: bool) -> None:
        return None  # the paper book moved in ``value``: no orders to follow

    def entry_id(self, intent: OrderIntent, sent: frozenset[str]) -> OrderIntent:
        """The same contract the same day has the same id (a duplicate is refused); once its
        paper position has closed, a re-entry gets the next id, ``<id>.2``, ``<id>.3`` ..."""
        if not self.reenter:
            return intent
        base, n, entry_id = intent.intent_id, 1, intent.intent_id
        while entry_id in sent:
            held = self.book.positions.get(entry_id)
            if held is None or held.active:
                break  # still working (or not ours to judge): the duplicate rule refuses it
            n += 1
            entry_id = f"{base}.{n}"
        return intent if entry_id == base else replace(intent, intent_id=entry_id)

    def positioned(self) -> frozenset[tuple[str, str]]:
        return frozenset((p.symbol, p.contract.right.value) for p in self.book.active())

    def held(self, now_ts: float, day: str) -> tuple[dict[str, int], float]:
        return count_held(
            (
                p.symbol,
                p.held if p.status == "open" else p.quantity,
                (p.entry_price if p.status == "open" and p.entry_price else p.entry_limit)
                * p.multiplier,
            )
            for p in self.book.active()
        )

    def opened(self, intent: OrderIntent, done: Execution, now_ts: float, day: str) -> None:
        if done.status in OPENS:
            self.book.open(intent, done.quantity, now_ts, day)

    async def exit_candidates(self, now_ts: float) -> list[Candidate]:
        return [Candidate(p.symbol, p.contract.expiry, p.contract.key) for p in self.book.active()]

    async def run_exits(self, now_ts: float, due: set[str], halted: bool) -> bool:
        # the book's own rule picks the due positions (their exit time or close has come)
        await self.book.drive(now_ts, self._day_of(now_ts), only_due=True)
        return True  # what is left is held for want of a bid: no order is working for it

    async def flatten(self, now_ts: float) -> str:
        before = len(self.book.active())
        left = await self.book.flatten(now_ts, self._day_of(now_ts))
        held = f", {len(left)} held for want of a bid" if left else ""
        return f"{before - len(left)} paper position(s) closed at the bid or cancelled{held}"

    async def close_out(self, now_ts: float) -> None:
        return None  # paper positions stay in the journal; the next start picks them up
