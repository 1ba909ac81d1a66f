"""The seam between the desk and its position book (supervisor/trading/position_book.py).

The desk asks its book, never the mode: a fake book steers every figure the risk rules read
(equity, the broker's P&L, what is held, what was sent, the entry id), and the factory is the
one place that picks paper or live, from what the execution gate says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from common.calendar import nyse
from common.messages import OrderIntent
from supervisor.broker.base import AccountSnapshot
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.trading.books import book_for
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Execution, Executor
from supervisor.trading.live_book import LivePositionBook
from supervisor.trading.live_reconcile import Reconciliation
from supervisor.trading.paper_book import PaperPositions
from supervisor.trading.position_book import Candidate, DeskSide, Valuation
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.test_desk import CALL, NOW, PUT, ControlledBroker, intent, result

pytestmark = pytest.mark.timeout(30)


class FakeBook:
    """A position book the test steers; it records what the desk asked of it."""

    def __init__(self, desk: DeskSide) -> None:
        self.desk = desk
        self.calls: list[str] = []
        self.equity = 100_000.0
        self.daily_pnl: float | None = None
        self.held_now: dict[str, int] = {}
        self.sent: frozenset[str] = frozenset()
        self.opened_ids: list[tuple[str, str]] = []

    @property
    def positions(self) -> Mapping[str, Position]:
        return {}

    async def start(self, now_ts: float) -> Reconciliation | None:
        self.calls.append("start")
        return None

    def new_day(self, day: str) -> None:
        self.calls.append(f"new_day {day}")

    async def value(self, account: AccountSnapshot, now_ts: float, day: str) -> Valuation:
        self.calls.append("value")
        return Valuation(self.equity, self.daily_pnl)

    async def follow(self, now_ts: float, halted: bool) -> None:
        self.calls.append(f"follow halted={halted}")
        self.desk.add_at_broker(self.sent)

    def entry_id(self, intent: OrderIntent, sent: frozenset[str]) -> OrderIntent:
        return intent

    def positioned(self) -> frozenset[tuple[str, str]]:
        return frozenset()

    def held(self, now_ts: float, day: str) -> tuple[dict[str, int], float]:
        return dict(self.held_now), 0.0

    def opened(self, intent: OrderIntent, done: Execution, now_ts: float, day: str) -> None:
        self.opened_ids.append((done.intent_id, done.status))

    async def exit_candidates(self, now_ts: float) -> list[Candidate]:
        return []

    async def run_exits(self, now_ts: float, due: set[str], halted: bool) -> bool:
        return True

    async def flatten(self, now_ts: float) -> str:
        self.calls.append("flatten")
        return "flattened"

    async def close_out(self, now_ts: float) -> None:
        self.calls.append("close_out")


def desk_with_fake(tmp_path: Path, **risk: float) -> tuple[Desk, FakeBook, Journal]:
    settings = make_settings(tmp_path, risk=risk)
    broker = ControlledBroker(settings)
    journal = Journal(settings.execution.journal_path)
    books: list[FakeBook] = []

    def make(desk: DeskSide) -> FakeBook:
        books.append(FakeBook(desk))
        return books[0]

    executor = Executor("dry_run", broker, journal)
    desk = Desk(settings, broker, journal, executor, SessionBook(broker, nyse()), book=make)
    return desk, books[0], journal


def test_the_desk_reads_every_figure_from_its_book(tmp_path: Path) -> None:
    # Given a desk whose book holds 8 SPY contracts and says IBKR already has "i-put"
    desk, book, _journal = desk_with_fake(tmp_path, max_position_per_symbol=10)
    book.held_now = {"SPY": 8}
    book.sent = frozenset({"i-put"})
    # When a cycle begins and two intents come
    state = asyncio.run(desk.begin_cycle(NOW))
    done = asyncio.run(desk.act_on([result(intent(CALL, "i-call"), intent(PUT, "i-put"))], NOW))
    # Then the book was asked in order, the cap left room for 2, the sent id is a duplicate,
    # and the book heard of both executions
    assert book.calls == ["new_day 2026-01-08", "value", "follow halted=False"]
    assert "i-put" in state.at_broker
    assert [(d.status, d.quantity) for d in done] == [("simulated", 2), ("refused", 0)]
    assert done[1].decision.rule == "duplicate"
    assert book.opened_ids == [("i-call", "simulated"), ("i-put", "refused")]


def test_the_books_equity_and_pnl_trip_the_kill_switch(tmp_path: Path) -> None:
    # Given a day started at 100,000 of equity
    desk, book, journal = desk_with_fake(tmp_path, daily_loss_limit_pct=2.0)
    asyncio.run(desk.begin_cycle(NOW))
    # When the book reports the broker's own P&L of -2,500 (the account's equity unchanged)
    book.daily_pnl = -2_500.0
    state = asyncio.run(desk.begin_cycle(NOW + 60))
    # Then the kill switch trips before the book follows its orders, and the book is told
    assert state.halted and state.daily_pnl == -2_500.0
    assert book.calls[-1] == "follow halted=True"
    saved = journal.day_state("2026-01-08")
    assert saved is not None and saved.halted


def test_start_and_close_out_are_the_books(tmp_path: Path) -> None:
    desk, book, _journal = desk_with_fake(tmp_path)
    assert asyncio.run(desk.start_live(NOW)) is None
    asyncio.run(desk.close_out(NOW))
    assert book.calls == ["start", "close_out"]


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("dry_run", PaperPositions), ("whatif", PaperPositions), ("live", LivePositionBook)],
)
def test_the_factory_picks_the_book_from_the_execution_gate(
    tmp_path: Path, mode: str, kind: type
) -> None:
    settings = make_settings(tmp_path, execution={"mode": mode}, ibkr={"account": "DU111"})
    broker = ControlledBroker(settings)
    journal = Journal(settings.execution.journal_path)
    executor = Executor(mode, broker, journal, "DU111")
    desk = Desk(settings, broker, journal, executor, SessionBook(broker, nyse()))
    assert type(desk.book) is kind
    assert type(book_for(desk)) is kind


def test_a_live_position_closed_since_the_start_no_longer_holds_its_direction(
    tmp_path: Path,
) -> None:
    # Given a live position left open by an earlier run, known to the journal at start
    from dataclasses import replace

    from tests.test_live_desk import LiveFakeBroker

    settings = make_settings(tmp_path, execution={"mode": "live"}, ibkr={"account": "DU111"})
    broker = LiveFakeBroker(settings)
    journal = Journal(settings.execution.journal_path)
    held = Position("i-0", "SPY", CALL, 2, 2.0, 3.0, 1.4, "open", NOW - 86_400, 2.0, exited=0)
    journal.save_position(held, "2026-01-07")
    executor = Executor("live", broker, journal, "DU111")
    desk = Desk(settings, broker, journal, executor, SessionBook(broker, nyse()))
    asyncio.run(desk.begin_cycle(NOW))
    (refused,) = asyncio.run(desk.act_on([result(intent(CALL, "i-1"))], NOW))
    assert refused.decision.rule == "already_positioned"
    # When it closes (its take-profit filled) and the same direction comes again
    closed = replace(
        held, status="closed", exit_reason="take_profit", exit_price=3.0, closed_ts=NOW, exited=2
    )
    journal.save_position(closed, "2026-01-08")
    asyncio.run(desk.begin_cycle(NOW + 1))
    (done,) = asyncio.run(desk.act_on([result(intent(CALL, "i-2"))], NOW + 1))
    # Then it is sent: what is positioned is read now, not from a copy taken at start
    assert done.status == "submitted" and done.quantity > 0


def test_the_desk_never_asks_for_the_mode() -> None:
    # the execution gate is the only part that knows it; the factory reads it once
    import ast

    from tests.conftest import REPO_ROOT

    tree = ast.parse((REPO_ROOT / "supervisor/trading/desk.py").read_text(encoding="utf-8"))
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"mode", "simulated", "is_live", "MODES"}
