"""The seam between the desk and the positions it trades: one interface, chosen once.

    PositionBook  what the desk asks of its positions each cycle: their value, what they
                  hold for the caps, what follows an accepted execution, the exits
    PaperPositions (paper_book.py)  dry_run and whatif: the paper book, driven by snapshots
    LivePositions  (live_book.py)   live: IBKR's orders, fills and positions, followed
    book_for      (books.py)        the one choice, from what the execution gate says

The desk holds one ``PositionBook`` and never asks which it is: the execution gate
(``execution.Executor``) is the only part that knows the mode; ``book_for`` reads it once.
A book may call back into the desk (``DeskSide``) for what only the desk owns: the day's
risk state and the kill switch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from common.config import Settings
from common.messages import OrderIntent
from supervisor.broker.base import AccountSnapshot, Broker
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter, cents, mode_label
from supervisor.trading.execution import Execution, Executor, describe
from supervisor.trading.live_reconcile import Reconciliation
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.trading.position_book")

# the exits whose closing a trader wants to hear of at once (an alert, not only the log)
ALERTED_EXITS = ("take_profit", "stop_loss", "expiry", "expired", "exercised", "flatten")


@dataclass(frozen=True)
class Valuation:
    """The account as the risk rules see it at a cycle's start."""

    equity: float  # the account's net liquidation value, with the paper book's P&L on paper
    daily_pnl: float | None  # the broker's own P&L today, when it reports one (live)


@dataclass(frozen=True)
class Candidate:
    """A contract held (or an entry working) that must be out before its expiry's close."""

    symbol: str
    expiry: str  # YYYYMMDD
    key: str  # the contract, as "SPY 20261204 680C"


class DeskSide(Protocol):
    """What a book may use of the desk that holds it."""

    settings: Settings
    broker: Broker
    journal: Journal
    executor: Executor
    sessions: SessionBook
    alerter: Alerter | None

    def trip(self, why: str, ts: float, key: str = ...) -> None:
        """The kill switch: no new entries for the rest of the day (said once per key)."""

    async def open_day(self, now_ts: float) -> None:
        """The day's risk state restored from the journal (or started) before a cycle."""

    def add_at_broker(self, intent_ids: frozenset[str]) -> None:
        """Intent ids the broker says were sent today: duplicates whatever the journal holds."""


class PositionBook(Protocol):
    """The positions the desk trades, paper or live; the desk calls these in this order."""

    @property
    def positions(self) -> Mapping[str, Position]:
        """The positions followed, by intent id (paper: closed ones of the day included)."""

    async def start(self, now_ts: float) -> Reconciliation | None:
        """Before the first cycle (live: the journal reconciled with the broker)."""

    def new_day(self, day: str) -> None:
        """A trading day begins: what is held from earlier days and what the journal holds."""

    async def value(self, account: AccountSnapshot, now_ts: float, day: str) -> Valuation:
        """At a cycle's start, the book driven to now first (paper: fills and exits)."""

    async def follow(self, now_ts: float, halted: bool) -> None:
        """After the risk state is known: orders and fills followed, entries cancelled when
        halted, exits placed (live); nothing to do on paper."""

    def entry_id(self, intent: OrderIntent, sent: frozenset[str]) -> OrderIntent:
        """The id an intent is journaled and sent under (a re-entry after a close)."""

    def positioned(self) -> frozenset[tuple[str, str]]:
        """(symbol, right) of every position held or entry working."""

    def held(self, now_ts: float, day: str) -> tuple[dict[str, int], float]:
        """Contracts held or working in entries, by underlying, and their premium."""

    def opened(self, intent: OrderIntent, done: Execution, now_ts: float, day: str) -> None:
        """An execution came back from the gate: a position follows an accepted one."""

    async def exit_candidates(self, now_ts: float) -> list[Candidate]:
        """What is held or working that the expiry guard must see out before its close."""

    async def run_exits(self, now_ts: float, due: set[str], halted: bool) -> bool:
        """The exits due now (``due``: their contract keys), without a cycle; True when what
        is still inside its window afterwards is held for want of a bid."""

    async def flatten(self, now_ts: float) -> str:
        """The trader's flatten: working entries cancelled, every position closed (paper: at
        the bid; live: closing limit orders); what was done, said in a line."""

    async def close_out(self, now_ts: float) -> None:
        """At exit: what must be done before the process goes (live: entries cancelled,
        the last fills booked, what stays working said)."""


def transition(p: Position, alerter: Alerter | None, mode: str) -> None:
    """A position changed status: logged, and alerted when it closed by an exit (saying the
    execution mode: a paper exit must never read as a live one)."""
    log.info(
        "position %s %s: %s%s",
        p.contract.key,
        p.status,
        p.exit_reason or "filled",
        f" P&L {p.realized_pnl:.2f}" if not p.active else "",
        extra={
            "event": "position",
            "intent_id": p.intent_id,
            "status": p.status,
            "exit_reason": p.exit_reason,
            "realized_pnl": p.realized_pnl,
        },
    )
    if p.exit_reason in ALERTED_EXITS and alerter:
        alerter.send(
            "trade",
            f"{mode_label(mode)} SELL {p.exited or p.quantity} x {p.contract.key} closed "
            f"({p.exit_reason}) at {cents(p.exit_price)}: P&L {p.realized_pnl:+.2f}",
        )


def traded(intent: OrderIntent, done: Execution) -> str:
    """The trade alert's text: the execution's kind (``dry_run``, ``whatif``, ``LIVE``), then
    the order as a trader reads it (prices in cents)."""
    return f"{mode_label(done.mode)} {describe(intent, done.quantity)}"


def count_held(items: Iterable[tuple[str, int, float]]) -> tuple[dict[str, int], float]:
    """(symbol, contracts, premium per contract) -> contracts by symbol, and their premium."""
    held: dict[str, int] = {}
    notional = 0.0
    for symbol, contracts, premium in items:
        held[symbol] = held.get(symbol, 0) + contracts
        if math.isfinite(premium):
            notional += premium * contracts
    return held, notional
