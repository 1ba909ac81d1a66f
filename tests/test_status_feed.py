"""The status the loop publishes (supervisor/runtime/status.py's StatusFeed): what /healthz,
the dashboard and Telegram's /status read."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.broker.stub import StubBroker
from supervisor.journal.records import DayState
from supervisor.journal.store import Journal
from supervisor.runtime.status import StatusFeed
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(30)


def feed(tmp_path: Path, journal: Journal, halted: bool) -> StatusFeed:
    settings = make_settings(tmp_path)
    state = SimpleNamespace(
        day="2026-12-01", halted=halted, daily_pnl=None, equity=1e5, start_equity=1e5
    )
    desk: Any = SimpleNamespace(state=state, journal=journal, paused=False)
    broker = StubBroker(settings.stub, lambda: 1.0)
    return StatusFeed(settings, broker, lambda: None, lambda: 0, lambda: desk)


def test_a_tripped_kill_switch_says_why(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        assert feed(tmp_path, journal, halted=False).status().halted_reason == ""
        why = "kill by cli from 127.0.0.1:42834"
        journal.save_day_state(DayState("2026-12-01", 1e5, True, why, 1.0))
        status = feed(tmp_path, journal, halted=True).status()
    assert status.halted and status.halted_reason == why
