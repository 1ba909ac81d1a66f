"""The watchdog's decisions (supervisor/runtime/liveness.py) and the beat a worker keeps
(workers/beat.py): pure code and shared memory, no worker process."""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

import pytest

from common.calendar import trading_day
from common.messages import SymbolTask
from supervisor.runtime.liveness import (
    MAX_INBOX_MESSAGES,
    StepWatch,
    due_for_retirement,
    overfull,
    stuck_on,
    watch_interval,
)
from tests.conftest import make_settings
from tests.fakes import FakeSupervisor
from workers.beat import Beat
from workers.main import TaskDriver
from workers.strategy import load_strategy

pytestmark = pytest.mark.timeout(30)

CTX = multiprocessing.get_context("spawn")


def test_a_step_seen_for_longer_than_the_timeout_is_stuck():
    watch = StepWatch()
    # Given a worker first seen inside step 7 on SPY at t=100
    assert stuck_on(watch, 7, "SPY", 100.0, timeout_s=20) is None
    # When it is still there 20 s later, it is not yet stuck; past 20 s it is
    assert stuck_on(watch, 7, "SPY", 120.0, timeout_s=20) is None
    assert stuck_on(watch, 7, "SPY", 120.5, timeout_s=20) == "SPY"


def test_a_worker_that_moves_on_or_waits_is_never_stuck():
    watch = StepWatch()
    stuck_on(watch, 7, "SPY", 100.0, timeout_s=20)
    # a new step restarts the count: many short steps are progress, not a hang
    assert stuck_on(watch, 9, "QQQ", 130.0, timeout_s=20) is None
    assert stuck_on(watch, 9, "QQQ", 140.0, timeout_s=20) is None
    # between steps (an even seq, no symbol) for an hour: idle, waiting for messages
    stuck_on(watch, 10, None, 150.0, timeout_s=20)
    assert stuck_on(watch, 10, None, 3750.0, timeout_s=20) is None


def test_the_watch_ticks_often_enough_for_short_timeouts():
    assert watch_interval(20.0) == 1.0
    assert watch_interval(1.0) == 0.25


def test_an_inbox_of_thousands_is_a_worker_that_does_not_read():
    assert not overfull(3)
    assert not overfull(MAX_INBOX_MESSAGES)
    assert overfull(MAX_INBOX_MESSAGES + 1)


def test_retirement_only_when_a_share_is_set_and_reached():
    assert not due_for_retirement(10_000, 0)  # 0: never
    assert not due_for_retirement(4, 5)
    assert due_for_retirement(5, 5)


class _Peeking:
    """A strategy that reads the beat from inside its own step."""

    wants_hourly_bars = False

    def __init__(self, settings: Any, beat: Beat) -> None:
        self.beat = beat
        self.seen: list[tuple[int, str | None]] = []
        self.inner = load_strategy(settings)

    def decide(self, view: Any) -> Any:
        self.seen.append(self.beat.read())
        return self.inner.decide(view)

    def choose(self, *args: Any) -> Any:
        return self.inner.choose(*args)


def test_the_beat_names_the_symbol_inside_a_step_and_nothing_between(tmp_path):
    # Given a driver keeping a beat, and a strategy that looks at it while deciding
    settings = make_settings(tmp_path)
    now = settings.stub.start.timestamp()
    beat = Beat(CTX)
    strategy = _Peeking(settings, beat)
    sent: queue.Queue[Any] = queue.Queue()
    driver = TaskDriver(1, settings, strategy, sent.put, beat)
    fake = FakeSupervisor(settings, now)
    # When QQQ runs to its result
    driver.start(SymbolTask(1, "QQQ", now, trading_day(now)))
    while (message := sent.get_nowait()) and hasattr(message, "requests"):
        for request in message.requests:
            driver.on_reply(fake.answer(request))
    # Then inside the step the beat said QQQ (an odd seq), and after it nothing (even)
    ((seq_inside, symbol_inside),) = strategy.seen
    assert symbol_inside == "QQQ" and seq_inside % 2 == 1
    seq_after, symbol_after = beat.read()
    assert symbol_after is None and seq_after > seq_inside


def test_a_step_that_raises_still_ends_its_beat(tmp_path):
    settings = make_settings(tmp_path, strategy={"name": "tests.strategies:Raises"})
    now = settings.stub.start.timestamp()
    beat = Beat(CTX)
    sent: list[Any] = []
    driver = TaskDriver(1, settings, load_strategy(settings), sent.append, beat)
    fake = FakeSupervisor(settings, now)
    driver.start(SymbolTask(1, "SPY", now, trading_day(now)))
    while not hasattr(sent[-1], "error"):
        for request in sent.pop().requests:
            driver.on_reply(fake.answer(request))
    # the strategy's exception failed the symbol, and the beat is back between steps
    assert sent[-1].error and beat.read()[1] is None
