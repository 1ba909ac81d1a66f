"""The cycle's in-flight cap and deadline, sized from IBKR's pace and lines (budget.py)."""

from __future__ import annotations

from typing import Any

import pytest

from common.settings_file import parse_settings
from supervisor.runtime.budget import cycle_budget

pytestmark = pytest.mark.timeout(10)


def settings(**sections: dict[str, Any]) -> Any:
    return parse_settings(dict(sections), "test", environ={})


def test_auto_keeps_the_governor_busy_within_the_lines() -> None:
    # Given the defaults: 45 msg/s (44.3 slots), 90 lines, 3 option snapshots per symbol
    budget = cycle_budget(settings(), 1000)
    # Then enough symbols are in flight to keep ~2 s of messages queued (44.3 x 2 / 7)
    assert budget.in_flight == 13
    # and a universe smaller than that has every symbol in flight, but never fewer than 2
    assert cycle_budget(settings(), 5).in_flight == 5
    assert cycle_budget(settings(), 1).in_flight == 2


def test_auto_in_flight_shrinks_with_the_lines_and_the_pace() -> None:
    # Given 30 lines (20 usable) and 3 snapshots per symbol: 6 symbols fit
    few_lines = settings(pacing={"max_market_data_lines": 30})
    assert cycle_budget(few_lines, 1000).in_flight == 6
    # Given 10 msg/s: ~3 symbols keep the pace busy
    slow = settings(pacing={"max_messages_per_s": 10})
    assert cycle_budget(slow, 1000).in_flight == 3


def test_auto_deadline_grows_with_the_universe_first_cycle_included() -> None:
    defaults = settings()
    # a small universe keeps the 45 s floor
    assert cycle_budget(defaults, 3).deadline_s == 45.0
    # 1,000 symbols at ~12 messages each on the first cycle of the day take ~270 s at
    # 44.3 msg/s: the deadline leaves half as much again, plus 30 s
    deadline = cycle_budget(defaults, 1000).deadline_s
    assert 1000 * 12 / 44.3 * 1.5 < deadline < 1000 * 12 / 44.3 * 1.5 + 31
    # and it scales with the universe
    assert cycle_budget(defaults, 200).deadline_s < deadline / 3


def test_numbers_in_the_settings_are_used_as_they_are() -> None:
    fixed = settings(universe={"max_concurrent_symbols": 40}, schedule={"cycle_deadline_s": 30})
    assert cycle_budget(fixed, 1000) == (40, 30.0)


def test_a_word_other_than_auto_is_refused_naming_the_key() -> None:
    with pytest.raises(Exception, match="universe.max_concurrent_symbols"):
        settings(universe={"max_concurrent_symbols": "lots"})
    with pytest.raises(Exception, match="schedule.cycle_deadline_s"):
        settings(schedule={"cycle_deadline_s": "never"})
