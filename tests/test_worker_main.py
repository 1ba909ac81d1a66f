"""A real worker process driven through fake supervisor queues: the test answers by hand."""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
from typing import Any

import pytest

from common.calendar import trading_day
from common.messages import (
    Bundle,
    FromWorker,
    Quote,
    QuoteReply,
    Replies,
    Requests,
    Signal,
    Stop,
    SymbolResult,
    SymbolTask,
    WorkerReady,
)
from tests.conftest import make_settings
from tests.fakes import FakeSupervisor
from tests.strategies import KILL_SYMBOL_ENV
from workers.main import TaskDriver, worker_main
from workers.strategy import load_strategy

pytestmark = pytest.mark.timeout(60)

CTX = multiprocessing.get_context("spawn")


class WorkerUnderTest:
    def __init__(self, settings: Any) -> None:
        self.inbox, self.outbox = CTX.Queue(), CTX.Queue()
        self.process = CTX.Process(target=worker_main, args=(7, self.inbox, self.outbox, settings))
        self.process.start()
        ready = self.outbox.get(timeout=30)
        assert isinstance(ready, WorkerReady) and ready.worker_id == 7

    def run_task(self, task: SymbolTask, answer: Any) -> SymbolResult:
        """Put a task, answer every request with ``answer`` until the result comes back."""
        self.inbox.put(task)
        while True:
            message = self.outbox.get(timeout=30)
            if isinstance(message, SymbolResult):
                return message
            assert isinstance(message, Requests) and message.worker_id == 7
            assert all(r.worker_id == 7 for r in message.requests)
            self.inbox.put(Replies(tuple(answer(r) for r in message.requests)))

    def stop(self) -> int | None:
        self.inbox.put(Stop())
        self.process.join(timeout=10)
        return self.process.exitcode


@pytest.fixture
def make_worker():
    started: list[WorkerUnderTest] = []

    def start(settings: Any) -> WorkerUnderTest:
        worker = WorkerUnderTest(settings)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)


def test_worker_turns_a_task_into_a_result_with_an_intent(tmp_path, make_worker):
    settings = make_settings(tmp_path)
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    worker = make_worker(settings)
    result = worker.run_task(SymbolTask(3, "SPY", now, trading_day(now)), fake.answer)
    assert (result.cycle_id, result.symbol, result.worker_id) == (3, "SPY", 7)
    assert result.signal is Signal.SELL and len(result.intents) == 1
    assert {type(r).__name__ for r in fake.seen} == {
        "QuoteRequest",
        "BarsRequest",
        "ChainRequest",
        "OptionQuotesRequest",
    }
    assert worker.stop() == 0


def test_a_hold_sends_no_snapshot_request_and_a_sell_does(tmp_path, make_worker):
    # Given a worker and two symbols at the stub's opening minute: QQQ holds, SPY sells
    settings = make_settings(tmp_path)
    now = settings.stub.start.timestamp()
    worker = make_worker(settings)
    hold, sell = FakeSupervisor(settings, now), FakeSupervisor(settings, now)
    # When each runs through the worker, answered by hand
    held = worker.run_task(SymbolTask(1, "QQQ", now, trading_day(now)), hold.answer)
    sold = worker.run_task(SymbolTask(1, "SPY", now, trading_day(now)), sell.answer)
    # Then the HOLD asked for bars only; the SELL asked for the underlying's snapshot once
    assert held.signal is Signal.HOLD and held.ok
    assert {type(r).__name__ for r in hold.seen} == {"BarsRequest"}
    assert sold.signal is Signal.SELL and sold.intents
    assert [type(r).__name__ for r in sell.seen].count("QuoteRequest") == 1
    assert worker.stop() == 0


def test_worker_never_imports_the_broker_library(tmp_path, make_worker):
    settings = make_settings(tmp_path, strategy={"name": "tests.strategies:ModuleProbe"})
    now = settings.stub.start.timestamp()
    worker = make_worker(settings)
    task = SymbolTask(1, "SPY", now, trading_day(now))
    result = worker.run_task(task, FakeSupervisor(settings, now).answer)
    assert result.reasons == ("loaded=none",)
    worker.stop()


def test_strategy_bug_costs_one_symbol_not_the_worker(tmp_path, make_worker):
    settings = make_settings(tmp_path, strategy={"name": "tests.strategies:Raises"})
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    worker = make_worker(settings)
    first = worker.run_task(SymbolTask(1, "SPY", now, trading_day(now)), fake.answer)
    assert not first.ok and "ZeroDivisionError: strategy bug" in (first.error or "")
    second = worker.run_task(SymbolTask(1, "QQQ", now, trading_day(now)), fake.answer)
    assert second.symbol == "QQQ" and not second.ok  # answered again: the worker lives on
    assert worker.process.is_alive()
    worker.stop()


def test_worker_exits_when_its_supervisor_is_gone(tmp_path):
    # Given a worker whose parent is an intermediate process that we SIGKILL
    settings = make_settings(tmp_path)
    pids: Any = CTX.Queue()
    parent = CTX.Process(target=_spawn_worker_and_hang, args=(settings, pids))
    parent.start()
    worker_pid = pids.get(timeout=30)
    # When the parent dies without any chance to clean up
    parent.kill()
    parent.join(5)
    # Then the orphaned worker notices and exits by itself
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(worker_pid).wait(timeout=10)
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == "zombie"


def _spawn_worker_and_hang(settings: Any, pids: Any) -> None:
    inbox, outbox = CTX.Queue(), CTX.Queue()
    worker = CTX.Process(target=worker_main, args=(1, inbox, outbox, settings))
    worker.start()
    outbox.get(timeout=30)
    pids.put(worker.pid)
    worker.join()  # hangs until killed


def test_driver_interleaves_symbols_and_routes_replies_by_id(tmp_path):
    # Given one driver with two tasks in flight (no process: TaskDriver is plain code)
    settings = make_settings(tmp_path)
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    sent: queue.Queue[Any] = queue.Queue()
    driver = TaskDriver(1, settings, load_strategy(settings), sent.put)
    driver.start(SymbolTask(1, "SPY", now, trading_day(now)))
    driver.start(SymbolTask(1, "AAPL", now, trading_day(now)))
    # When replies come back in reverse order of the requests
    results: dict[str, SymbolResult] = {}
    while len(results) < 2:
        batch = []
        while not sent.empty():
            batch.append(sent.get())
        for message in batch:
            if isinstance(message, SymbolResult):
                results[message.symbol] = message
        requests = [r for m in batch if isinstance(m, Requests) for r in m.requests]
        for request in reversed(requests):
            driver.on_reply(fake.answer(request))
    # Then each symbol got its own data: the SPY result trades SPY options only
    assert results["SPY"].signal is Signal.SELL
    assert all(i.contract.symbol == "SPY" for i in results["SPY"].intents)
    assert results["AAPL"].ok and results["AAPL"].symbol == "AAPL"
    assert not driver.by_request


def test_unknown_reply_is_dropped(tmp_path):
    settings = make_settings(tmp_path)
    driver = TaskDriver(1, settings, load_strategy(settings), lambda m: None)
    driver.on_reply(QuoteReply(999, error="late"))
    assert driver.by_request == {}


def test_a_reply_of_another_kind_than_its_request_fails_the_symbol_with_the_traceback(tmp_path):
    # Given a task whose first step asks for bars
    settings = make_settings(tmp_path)
    now = settings.stub.start.timestamp()
    sent: list[FromWorker] = []
    driver = TaskDriver(1, settings, load_strategy(settings), sent.append)
    driver.start(SymbolTask(1, "SPY", now, trading_day(now)))
    (first,) = sent
    assert isinstance(first, Requests)
    # When each bars request is answered with a quote (a bug on the channel, not bad data)
    driver.on_replies(
        Replies(tuple(QuoteReply(r.request_id, Quote("SPY")) for r in first.requests))
    )
    # Then the symbol fails with the traceback naming the mismatch, and nothing waits on it
    result = sent[-1]
    assert isinstance(result, SymbolResult) and not result.ok
    assert "TypeError" in (result.error or "") and "wants a BarsReply" in (result.error or "")
    assert not driver.by_request


def test_a_steps_requests_go_out_as_one_message_and_its_replies_come_back_as_one(tmp_path):
    # Given a driver whose strategy wants hourly bars too (quote, minute and hourly bars)
    settings = make_settings(tmp_path)
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    sent: list[Any] = []
    driver = TaskDriver(1, settings, load_strategy(settings), sent.append)
    # When a task starts
    driver.start(SymbolTask(1, "SPY", now, trading_day(now)))
    # Then its first step is one message with both bar requests (no snapshot before a signal)
    (first,) = sent
    assert isinstance(first, Requests)
    assert [type(r).__name__ for r in first.requests] == ["BarsRequest", "BarsRequest"]
    # And one Replies message moves it to its next step (SELL: the chain and the snapshot),
    # again one message
    driver.on_replies(Replies(tuple(fake.answer(r) for r in first.requests)))
    assert len(sent) == 2 and isinstance(sent[1], Requests)
    assert [type(r).__name__ for r in sent[1].requests] == ["ChainRequest", "QuoteRequest"]
    assert set(driver.by_request) == {r.request_id for r in sent[1].requests}


def test_a_finished_symbol_is_sent_before_the_next_message_can_kill_its_worker(
    tmp_path, monkeypatch
):
    # Given a worker whose strategy kills it on AAPL, writing to a pipe as in the pool
    monkeypatch.setenv(KILL_SYMBOL_ENV, "AAPL")
    settings = make_settings(tmp_path, strategy={"name": "tests.strategies:AlwaysDie"})
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    inbox, (channel, writer) = CTX.Queue(), CTX.Pipe(duplex=False)
    process = CTX.Process(target=worker_main, args=(7, inbox, writer, settings))
    process.start()
    writer.close()
    try:
        assert isinstance(channel.recv(), WorkerReady)
        # When SPY and AAPL are given as one bundle
        day = trading_day(now)
        inbox.put(Bundle((SymbolTask(1, "SPY", now, day), SymbolTask(1, "AAPL", now, day))))
        # Then both first steps come back as one message
        assert channel.poll(30)
        steps = channel.recv()
        assert isinstance(steps, Bundle)
        assert [m.requests[0].symbol for m in steps.messages] == ["SPY", "AAPL"]
        # When both are answered in one bundle, SPY's replies first
        inbox.put(
            Bundle(
                tuple(Replies(tuple(fake.answer(r) for r in m.requests)) for m in steps.messages)
            )
        )
        # Then SPY's result was sent before AAPL's replies killed the worker
        assert channel.poll(30)
        result = channel.recv()
        assert isinstance(result, SymbolResult) and result.symbol == "SPY" and result.ok
        process.join(10)
        assert process.exitcode == 18
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
