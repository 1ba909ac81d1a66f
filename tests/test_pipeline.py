"""The per-symbol pipeline generator, driven by hand: no processes, no queues."""

from __future__ import annotations

import itertools
import math
from array import array

import pytest

from common.calendar import trading_day
from common.messages import (
    Bars,
    BarsReply,
    BarsRequest,
    ChainReply,
    ChainRequest,
    OptionChain,
    OptionQuotesRequest,
    Quote,
    QuoteReply,
    QuoteRequest,
    Signal,
    SymbolResult,
    SymbolTask,
    failed,
)
from tests.conftest import make_settings
from tests.fakes import FakeSupervisor
from tests.sessions import STUB_SESSION
from workers.pipeline import last_close, process_symbol
from workers.signals import SignalDecision
from workers.strategy import load_strategy

pytestmark = pytest.mark.timeout(30)


def drive(gen, answer) -> tuple[SymbolResult, list[type]]:
    """Run a pipeline to its result, answering each yielded batch with ``answer``."""
    kinds: list[type] = []
    try:
        batch = next(gen)
        while True:
            kinds.extend(type(r) for r in batch)
            batch = gen.send(tuple(answer(r) for r in batch))
    except StopIteration as done:
        return done.value, kinds


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


def pipeline(settings, symbol: str, now: float):
    task = SymbolTask(cycle_id=1, symbol=symbol, now_ts=now, day=trading_day(now))
    return process_symbol(task, 1, settings, load_strategy(settings), itertools.count(1))


def test_directional_signal_walks_the_whole_chain(settings):
    # Given the stub session's opening minute, where SPY trends down (SELL)
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    # When the pipeline runs to the end
    result, kinds = drive(pipeline(settings, "SPY", now), fake.answer)
    # Then it asked for the chain and for the candidates' snapshots only
    assert result.signal is Signal.SELL
    assert ChainRequest in kinds and OptionQuotesRequest in kinds
    (quotes_request,) = [r for r in fake.seen if isinstance(r, OptionQuotesRequest)]
    assert len(quotes_request.contracts) == settings.options.strike_count
    assert all(c.right.value == "P" for c in quotes_request.contracts)
    (intent,) = result.intents
    assert intent.contract in quotes_request.contracts
    assert intent.stop_loss < intent.entry_limit < intent.take_profit


def test_hold_asks_for_no_chain_and_no_snapshot(settings):
    # Given QQQ at the stub's opening minute, a HOLD by its bars
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    # When the pipeline runs
    result, kinds = drive(pipeline(settings, "QQQ", now), fake.answer)
    # Then it decided from the bars alone: no underlying snapshot, no chain
    assert result.signal is Signal.HOLD and result.ok and result.skipped is None
    assert QuoteRequest not in kinds and ChainRequest not in kinds
    assert set(kinds) == {BarsRequest}
    assert result.intents == () and result.reasons


def test_a_directional_signal_asks_for_the_snapshot_with_the_chain_after_the_bars(settings):
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    batches: list[list[type]] = []
    gen = pipeline(settings, "SPY", now)
    batch = next(gen)
    try:
        while True:
            batches.append([type(r) for r in batch])
            batch = gen.send(tuple(fake.answer(r) for r in batch))
    except StopIteration as done:
        result = done.value
    # bars first (the signal), then the snapshot and the chain in one step, then the options
    assert result.signal is Signal.SELL and result.intents
    assert batches == [
        [BarsRequest, BarsRequest],
        [ChainRequest, QuoteRequest],
        [OptionQuotesRequest],
    ]
    # and the ATM is read from the snapshot's price, not from a bar
    quote = next(fake.answer(r) for r in fake.seen if isinstance(r, QuoteRequest)).value
    assert isinstance(quote, Quote)
    assert any(f"for price {(quote.bid + quote.ask) / 2:g}" in r for r in result.reasons)


def test_a_strategy_that_decides_on_the_quote_gets_it_with_the_bars(tmp_path):
    settings = make_settings(tmp_path, strategy={"name": "tests.strategies:ReadsTheQuote"})
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    result, kinds = drive(pipeline(settings, "QQQ", now), fake.answer)
    assert result.signal is Signal.HOLD and result.reasons[0].startswith("quote mid ")
    assert kinds.count(QuoteRequest) == 1


def test_with_the_price_from_the_last_bar_no_snapshot_is_asked_at_all(tmp_path):
    # Given quotes.underlying_price: last_bar, and SPY selling at the stub's opening minute
    settings = make_settings(tmp_path, quotes={"underlying_price": "last_bar"})
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)
    # When the pipeline runs to its intent
    result, kinds = drive(pipeline(settings, "SPY", now), fake.answer)
    # Then no underlying snapshot was asked for, and the ATM is read from the last bar's close
    assert result.signal is Signal.SELL and result.intents
    assert QuoteRequest not in kinds and OptionQuotesRequest in kinds
    (bars_request,) = [r for r in fake.seen if isinstance(r, BarsRequest) and r.bar_minutes == 1]
    bars = fake.answer(bars_request).value
    assert isinstance(bars, Bars)
    assert any(f"for price {bars.close[-1]:g}" in r for r in result.reasons)


def test_with_the_price_from_the_last_bar_a_symbol_without_a_usable_close_is_skipped(tmp_path):
    # Given a strategy that buys whatever the bars say, and bars without one usable close
    settings = make_settings(
        tmp_path,
        quotes={"underlying_price": "last_bar"},
        strategy={"name": "tests.strategies:BuysEverySymbol"},
    )
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)

    def answer(request):
        if isinstance(request, BarsRequest):
            return BarsReply(
                request.request_id,
                Bars("SPY", ts=array("d", [now - 60]), close=array("d", [math.nan])),
            )
        return fake.answer(request)

    result, kinds = drive(pipeline(settings, "SPY", now), answer)
    # Then it is skipped for want of a price, having asked for no snapshot
    assert result.signal is Signal.BUY and result.skipped == "no usable price (no bar close)"
    assert QuoteRequest not in kinds and OptionQuotesRequest not in kinds
    assert math.isnan(last_close(Bars("X", close=array("d", [math.nan, -1.0]))))


def test_the_snapshot_failing_after_a_signal_is_a_failure(settings):
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)

    def answer(request):
        if isinstance(request, QuoteRequest):
            return failed(request, "timed out after 15s")
        return fake.answer(request)

    result, kinds = drive(pipeline(settings, "SPY", now), answer)
    assert result.signal is Signal.SELL and not result.ok
    assert result.error == "market data: timed out after 15s"
    assert OptionQuotesRequest not in kinds


def test_no_usable_price_skips_with_the_reason(settings):
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)

    def answer(request):
        if isinstance(request, QuoteRequest):  # IBKR's "no quote": -1, 0 and NaN
            return QuoteReply(request.request_id, Quote("SPY", -1, 0, math.nan, -1))
        return fake.answer(request)

    result, kinds = drive(pipeline(settings, "SPY", now), answer)
    assert result.ok and result.skipped is not None
    assert "no usable price" in result.skipped
    assert OptionQuotesRequest not in kinds


def test_no_market_data_is_a_failure_with_its_reason_not_a_hold(settings):
    now = settings.stub.start.timestamp()

    def answer(request):
        return failed(request, "SymbolDataError: 354 not subscribed")

    result, _ = drive(pipeline(settings, "SPY", now), answer)
    # the cycle line counts it failed, not ok with a HOLD
    assert not result.ok and result.skipped is None
    assert result.error == "market data: SymbolDataError: 354 not subscribed"


def test_empty_chain_is_a_clear_skip(settings):
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)

    def answer(request):
        if isinstance(request, ChainRequest):
            return ChainReply(request.request_id, OptionChain("SPY", ("20260109",), ()))
        return fake.answer(request)

    result, kinds = drive(pipeline(settings, "SPY", now), answer)
    assert result.signal is Signal.SELL
    assert result.skipped is not None and result.skipped.startswith("chain:")
    assert OptionQuotesRequest not in kinds


def test_hourly_bars_requested_only_when_the_whale_rule_is_on(tmp_path):
    off = make_settings(tmp_path, strategy={"whale": {"enabled": False}})
    now = off.stub.start.timestamp()
    first_batch = next(pipeline(off, "SPY", now))
    assert [getattr(r, "bar_minutes", None) for r in first_batch] == [1]
    on = make_settings(tmp_path)
    first_batch = next(pipeline(on, "SPY", now))
    assert [getattr(r, "bar_minutes", None) for r in first_batch] == [1, 60]


def test_vwap_is_anchored_to_the_open_however_old_the_session(settings):
    # Given SPY at 14:00, four and a half hours (270 bars) into the stub's session
    opens = STUB_SESSION.replace(hour=9, minute=30).timestamp()
    now = STUB_SESSION.replace(hour=14, minute=0).timestamp()
    fake = FakeSupervisor(settings, now)
    task = SymbolTask(
        1,
        "SPY",
        now,
        trading_day(now),
        session_open_ts=opens,
        session_close_ts=STUB_SESSION.replace(hour=16, minute=0).timestamp(),
    )
    # When the pipeline runs
    result, _ = drive(
        process_symbol(task, 1, settings, load_strategy(settings), itertools.count(1)), fake.answer
    )
    # Then it asked for every bar since the open, not only the 120 of the signal's lookback
    (bars_request,) = [r for r in fake.seen if isinstance(r, BarsRequest) and r.bar_minutes == 1]
    assert bars_request.count == 270
    # and its VWAP is the one computed by hand from the session's bars, open to 14:00
    bars = fake.answer(BarsRequest(0, 1, "SPY", 400)).value
    assert isinstance(bars, Bars)
    session = [i for i in range(len(bars)) if opens <= bars.ts[i] < now]
    assert len(session) == 270

    def by_hand(rows: list[int]) -> float:
        typical = [(bars.high[i] + bars.low[i] + bars.close[i]) / 3 for i in rows]
        return sum(t * bars.volume[i] for t, i in zip(typical, rows, strict=True)) / sum(
            bars.volume[i] for i in rows
        )

    (said,) = [r for r in result.reasons if " vwap " in r]
    assert said.endswith(f"vwap {by_hand(session):.2f}")
    # (a rolling VWAP of the last 120 bars would say something else)
    assert f"{by_hand(session[-120:]):.2f}" != f"{by_hand(session):.2f}"


class _WhaleBuys:
    """A whale break on every call (what the built-in's hourly rule returns when it fires)."""

    wants_hourly_bars = False

    def decide(self, view):
        return SignalDecision(
            Signal.BUY, 0.9, ("whale break",), whale=True, whale_fired_ts=view.task.now_ts
        )

    def choose(self, view, decision, selection, quotes):
        return (), ()


def _drive(gen, answer):
    try:
        batch = next(gen)
        while True:
            batch = gen.send(tuple(answer(r) for r in batch))
    except StopIteration as done:
        return done.value


@pytest.mark.parametrize("snapshot", ["unusable", "timed out"])
def test_a_whale_whose_snapshot_fails_is_not_spent(tmp_path, snapshot):
    # Given a whale break (BUY from bars) whose underlying snapshot is unusable or times out.
    # (the decision now comes before the snapshot; the loop stores a result's
    # whale_fired_ts whatever its outcome, debouncing the whale for 3 days without a trade)
    settings = make_settings(tmp_path)
    now = settings.stub.start.timestamp()
    fake = FakeSupervisor(settings, now)

    def answer(request):
        if isinstance(request, QuoteRequest):
            if snapshot == "unusable":
                return QuoteReply(request.request_id, Quote("SPY", -1, 0, math.nan, -1))
            return failed(request, "timed out after 15s")
        return fake.answer(request)

    task = SymbolTask(cycle_id=1, symbol="SPY", now_ts=now, day=trading_day(now))
    result = _drive(process_symbol(task, 1, settings, _WhaleBuys(), itertools.count(1)), answer)
    assert result.intents == ()  # no order could be made
    # Then the whale is not spent on a symbol that could not be traded
    assert result.whale_fired_ts is None
