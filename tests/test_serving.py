"""DataService: every request answered once, errors as values, failing symbols rest."""

from __future__ import annotations

import asyncio

import pytest

from common.calendar import nyse
from common.messages import (
    BarsRequest,
    ChainReply,
    ChainRequest,
    OptionQuotesRequest,
    QuoteReply,
    QuoteRequest,
)
from supervisor.broker.base import ConnectionLost, SymbolDataError
from supervisor.runtime.serving import DataService, SymbolBackoff, step_of

pytestmark = pytest.mark.timeout(30)


class FlakyBroker:
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0
        self.fail_with: Exception | None = SymbolDataError("354 not subscribed")
        self.hang = False
        self.chain_fails = True

    def is_connected(self) -> bool:
        return True

    async def chain(self, symbol: str):
        self.calls += 1
        if self.chain_fails:
            raise SymbolDataError(f"chain {symbol}: error 321")
        return f"chain of {symbol}"

    async def quote(self, symbol: str):
        self.calls += 1
        if self.hang:
            await asyncio.sleep(10)
        if self.fail_with is not None:
            raise self.fail_with
        return f"quote of {symbol}"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ask(service: DataService, symbol: str = "XYZ", rid: int = 1):
    return asyncio.run(service.answer(QuoteRequest(rid, 1, symbol)))


def make(after: int = 3):
    broker, clock = FlakyBroker(), FakeClock()
    backoff = SymbolBackoff(after=after, base_s=60, max_s=300, clock=clock)
    service = DataService(
        broker,  # type: ignore[arg-type]
        timeout_s=0.2,
        calendar=nyse(),
        now=clock,
        backoff=backoff,
    )
    return broker, clock, service


def test_a_symbol_rests_after_repeated_failures_then_is_asked_again():
    broker, clock, service = make(after=3)
    for rid in range(3):
        assert "SymbolDataError: 354" in (ask(service, rid=rid).error or "")
    assert broker.calls == 3
    # the 4th request does not reach the broker: the symbol rests 60 s
    rested = ask(service, rid=4)
    assert broker.calls == 3 and "rests 60s" in (rested.error or "")
    assert ask(service, "OTHER").error is not None and broker.calls == 4  # others unaffected
    clock.t += 61
    broker.fail_with = None
    assert ask(service, rid=5).value == "quote of XYZ"
    assert service.backoff.failures == {"OTHER": {"quote": 1}}


def test_rest_doubles_and_is_capped():
    broker, clock, service = make(after=1)
    waits = []
    for _ in range(5):
        ask(service)
        waits.append(round(service.backoff.resting("XYZ")))
        clock.t += waits[-1] + 1
    assert waits == [60, 120, 240, 300, 300]


def test_a_timeout_is_an_error_reply_and_counts_as_a_failure():
    broker, _, service = make(after=1)
    broker.hang = True
    reply = ask(service)
    assert reply.error == "timed out after 0.2s"
    assert service.backoff.resting("XYZ") > 0


def test_connection_loss_does_not_punish_the_symbol():
    broker, _, service = make(after=1)
    broker.fail_with = ConnectionLost("gateway restarting")
    assert "ConnectionLost" in (ask(service).error or "")
    assert service.backoff.resting("XYZ") == 0


def chain(service: DataService, symbol: str = "XYZ", rid: int = 1):
    return asyncio.run(service.answer(ChainRequest(rid, 1, symbol)))


def test_a_step_failing_every_cycle_rests_the_symbol_though_others_succeed():
    # Given a symbol whose quote succeeds every cycle but whose chain fails every cycle
    broker, clock, service = make(after=3)
    broker.fail_with = None
    for cycle in range(3):
        assert ask(service, rid=2 * cycle).value == "quote of XYZ"
        assert "error 321" in (chain(service, rid=2 * cycle + 1).error or "")
    # Then after the third failed chain the symbol rests, the quote's successes
    # notwithstanding, and the reply names the step that failed
    calls = broker.calls
    rested = ask(service, rid=10)
    assert broker.calls == calls and rested.error == "XYZ rests 60s after repeated failures (chain)"
    # When the rest is over, the quote succeeds and the chain fails again: the rest doubles
    clock.t += 61
    assert ask(service, rid=11).value == "quote of XYZ"
    assert service.backoff.resting("XYZ") == 0
    chain(service, rid=12)
    assert round(service.backoff.resting("XYZ")) == 120
    # And once the chain succeeds too, nothing of the symbol is remembered
    clock.t += 121
    broker.chain_fails = False
    assert chain(service, rid=13).value == "chain of XYZ"
    assert service.backoff.failures == {} and service.backoff.resting("XYZ") == 0


def test_each_bar_size_is_its_own_step():
    assert step_of(QuoteRequest(1, 1, "SPY")) == "quote"
    assert step_of(BarsRequest(1, 1, "SPY", 30, 1)) == "bars 1m"
    assert step_of(BarsRequest(1, 1, "SPY", 24, 60)) == "bars 60m"
    assert step_of(ChainRequest(1, 1, "SPY")) == "chain"
    assert step_of(OptionQuotesRequest(1, 1, "SPY", ())) == "option quotes"


def test_a_steps_requests_are_answered_together_each_in_its_place():
    # Given a quote that hangs past the timeout and a chain that succeeds, asked as one step
    broker, _, service = make()
    broker.hang, broker.fail_with, broker.chain_fails = True, None, False
    replies = asyncio.run(
        service.answer_all((QuoteRequest(5, 1, "XYZ"), ChainRequest(6, 1, "XYZ")))
    )
    # Then each has its own answer, in the step's order and of its request's kind: the
    # timeout costs only the quote
    assert [r.request_id for r in replies.replies] == [5, 6]
    assert [type(r) for r in replies.replies] == [QuoteReply, ChainReply]
    assert "timed out after 0.2s" in (replies.replies[0].error or "")
    assert replies.replies[1].value == "chain of XYZ" and replies.replies[1].ok
