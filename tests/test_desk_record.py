"""The desk at each cycle's start: the broker, not the journal, says what was already sent,
and a journal file deleted or replaced under the bot stops new entries within a cycle."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from common.calendar import nyse
from supervisor.broker.base import OpenOrder
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.store import Journal
from supervisor.trading.desk import Desk
from supervisor.trading.execution import Executor
from supervisor.trading.sessions import SessionBook
from tests.conftest import make_settings
from tests.test_desk import CALL, NOW, PUT, intent, result
from tests.test_live_desk import LiveFakeBroker

pytestmark = pytest.mark.timeout(30)

ID = "0123456789abcdef"


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._once: set[str] = set()

    def send(self, kind: str, text: str, fields: object = None) -> bool:
        self.sent.append((kind, text))
        return True

    def send_once(self, key: str, kind: str, text: str, fields: object = None) -> bool:
        if key in self._once:
            return False
        self._once.add(key)
        return self.send(kind, text)


def desk_for(tmp_path: Path, mode: str = "live") -> tuple[Desk, LiveFakeBroker, Alerts]:
    settings = make_settings(
        tmp_path,
        execution={"mode": mode},
        ibkr={"account": "DU111"},
        risk={"one_position_per_direction": False},
    )
    broker = LiveFakeBroker(settings)
    journal = Journal(settings.execution.journal_path)
    alerts = Alerts()
    desk = Desk(
        settings,
        broker,
        journal,
        Executor(mode, broker, journal, "DU111"),
        SessionBook(broker, nyse()),
        alerts,  # type: ignore[arg-type]
    )
    return desk, broker, alerts


def cycle(desk: Desk, ts: float, *intents) -> list[tuple[str, str]]:
    asyncio.run(desk.begin_cycle(ts))
    done = asyncio.run(desk.act_on([result(*intents)], ts))
    return [(e.status, e.decision.rule) for e in done]


def test_an_intent_working_at_ibkr_is_not_sent_again_on_a_fresh_journal(tmp_path):
    # Given a fresh journal (the last one deleted) and IBKR still working the bracket a
    # previous run sent for this intent, its orderRef the intent id
    desk, broker, _alerts = desk_for(tmp_path)
    c = CALL
    broker.working = [
        OpenOrder(
            1,
            ID,
            "Submitted",
            "BUY",
            5,
            "LMT",
            c.symbol,
            "OPT",
            c.expiry,
            c.strike,
            "C",
            2.0,
            perm_id=901,
            account="DU111",
            client_id=3,
        ),
        OpenOrder(
            2,
            ID,
            "PreSubmitted",
            "SELL",
            5,
            "LMT",
            c.symbol,
            "OPT",
            c.expiry,
            c.strike,
            "C",
            3.0,
            perm_id=902,
            parent_id=1,
            account="DU111",
            client_id=3,
        ),
        OpenOrder(
            3,
            ID,
            "PreSubmitted",
            "SELL",
            5,
            "STP",
            c.symbol,
            "OPT",
            c.expiry,
            c.strike,
            "C",
            aux=1.4,
            perm_id=903,
            parent_id=1,
            account="DU111",
            client_id=3,
        ),
    ]
    # When the same intent is decided again
    outcome = cycle(desk, NOW, intent(CALL, ID))
    # Then it is refused as a duplicate and nothing reaches the broker
    assert outcome == [("refused", "duplicate")] and broker.placed == []
    # and the bracket is the journal's now: adopted, followed
    assert desk.journal.load_intent(ID) is not None
    assert desk.journal.orders.live((OrderStatus.WORKING,))[0].perm_id == 901


def test_an_execution_today_blocks_its_intent_too(tmp_path):
    from supervisor.broker.base import Fill

    desk, broker, _alerts = desk_for(tmp_path)
    broker.executions = [Fill("e1", 1, ID, "BOT", 5, 2.0, NOW - 60, 1.0, 901)]
    assert cycle(desk, NOW, intent(CALL, ID)) == [("refused", "duplicate")]
    assert broker.placed == []


@pytest.mark.parametrize("mode", ["live", "dry_run"])
def test_a_journal_deleted_under_the_bot_stops_new_entries_within_a_cycle(tmp_path, caplog, mode):
    desk, broker, alerts = desk_for(tmp_path, mode)
    assert cycle(desk, NOW, intent(CALL, "i-1"))[0][1] == "ok"
    # When the journal file is deleted under the running bot
    desk.journal.path.unlink()
    with caplog.at_level(logging.INFO):
        later = [cycle(desk, NOW + 60 * n, intent(PUT, f"i-{n}")) for n in (2, 3)]
    # Then the next cycles refuse every entry, rule journal_lost
    assert later == [[("refused", "journal_lost")]] * 2
    assert [i for i, _ in broker.placed] == (["i-1"] if mode == "live" else [])
    # said once: one ERROR naming the path and what changed, one alert
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(desk.journal.path) in errors[0] and "gone" in errors[0]
    assert [kind for kind, _ in alerts.sent if kind != "trade"] == ["journal_lost"]


def test_an_entry_cancelled_unfilled_before_a_lost_journal_is_not_sent_again(tmp_path):
    # Given a fresh journal and an entry of this intent cancelled unfilled earlier today: no
    # open order, no execution; only IBKR's completed orders still carry its orderRef
    desk, broker, _alerts = desk_for(tmp_path)

    async def completed() -> list[str]:
        return [ID, "not-ours"]

    broker.completed_refs = completed  # type: ignore[method-assign]
    asyncio.run(desk.start_live(NOW))
    assert cycle(desk, NOW, intent(CALL, ID)) == [("refused", "duplicate")]
    assert broker.placed == []
