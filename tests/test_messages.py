"""The worker channel's messages (common/messages.py): each request kind has its reply kind,
a reply's value is taken typed by the request that asked for it, and everything survives
the pickle that carries it between processes."""

from __future__ import annotations

import math
import pickle
from array import array
from datetime import date

import pytest

from common.messages import (
    Bars,
    BarsReply,
    BarsRequest,
    Bundle,
    ChainReply,
    ChainRequest,
    OptionChain,
    OptionContract,
    OptionQuote,
    OptionQuotesReply,
    OptionQuotesRequest,
    OrderIntent,
    Quote,
    QuoteReply,
    QuoteRequest,
    RemoteError,
    Replies,
    Reply,
    Requests,
    Right,
    Signal,
    Stop,
    SymbolResult,
    SymbolTask,
    WorkerReady,
    bundled,
    failed,
    unbundled,
    value_of,
)

pytestmark = pytest.mark.timeout(10)

CONTRACT = OptionContract("SPY", "20260109", 590.0, Right.PUT)
BARS = Bars("SPY", ts=array("d", [1.0, 2.0]), close=array("d", [590.5, math.nan]))


def test_each_request_is_answered_by_its_own_reply_kind() -> None:
    assert QuoteRequest(1, 1, "SPY").answered_by is QuoteReply
    assert BarsRequest(2, 1, "SPY", 30).answered_by is BarsReply
    assert ChainRequest(3, 1, "SPY").answered_by is ChainReply
    assert OptionQuotesRequest(4, 1, "SPY", (CONTRACT,)).answered_by is OptionQuotesReply
    # and an error is a reply of the kind the request expects, carrying its id
    assert failed(BarsRequest(2, 1, "SPY", 30), "timed out") == BarsReply(2, error="timed out")


def test_a_value_is_found_by_request_id_whatever_the_order() -> None:
    chain = OptionChain("SPY", ("20260109",), (590.0,))
    quote_request, chain_request = QuoteRequest(7, 1, "SPY"), ChainRequest(8, 1, "SPY")
    replies = (ChainReply(8, chain), QuoteReply(7, Quote("SPY", 1.0, 2.0)))
    assert value_of(replies, chain_request) == chain
    assert value_of(replies, quote_request) == Quote("SPY", 1.0, 2.0)


def test_an_error_reply_raises_remote_error_with_its_text() -> None:
    request = QuoteRequest(7, 1, "SPY")
    with pytest.raises(RemoteError, match="^SymbolDataError: 354$"):
        value_of((failed(request, "SymbolDataError: 354"),), request)


@pytest.mark.parametrize(
    "replies",
    [
        (BarsReply(7, BARS),),  # another kind under the request's id
        (QuoteReply(8, Quote("SPY")),),  # the right kind, another request's
        (QuoteReply(7),),  # neither value nor error
    ],
)
def test_a_reply_that_does_not_answer_the_request_is_a_bug_not_bad_data(
    replies: tuple[Reply, ...],
) -> None:
    # A RemoteError would make the symbol a "market data" failure; a TypeError fails it
    # with the traceback, as the bug it is
    with pytest.raises(TypeError, match="QuoteReply"):
        value_of(replies, QuoteRequest(7, 1, "SPY"))


def test_bundles_stand_for_their_messages_and_one_message_is_sent_as_itself() -> None:
    stop, ready = Stop(), WorkerReady(1, 42)
    assert bundled([stop]) is stop and unbundled(stop) == (stop,)
    both: Bundle[WorkerReady | Stop] = Bundle((ready, stop))
    assert bundled([ready, stop]) == both and unbundled(both) == (ready, stop)


def _every_message() -> list[object]:
    day = date(2026, 1, 5)
    quote = OptionQuote(CONTRACT, bid=1.0, ask=1.1, delta=-0.5)
    intent = OrderIntent(
        "i1", 3, "SPY", CONTRACT, Signal.SELL, 1.05, 1.5, 0.8, 1.05, 0.7, ("r",), 1.0, 1.1, 9.0
    )
    requests = (
        QuoteRequest(1, 2, "SPY"),
        BarsRequest(2, 2, "SPY", 120, 60, False),
        ChainRequest(3, 2, "SPY"),
        OptionQuotesRequest(4, 2, "SPY", (CONTRACT,)),
    )
    replies = (
        QuoteReply(1, Quote("SPY", 590.0, 590.1, ts=5.0)),
        BarsReply(2, BARS),
        ChainReply(3, OptionChain("SPY", ("20260109",), (590.0, 591.0))),
        OptionQuotesReply(4, (quote,)),
        failed(requests[0], "timed out after 15s"),
    )
    task = SymbolTask(3, "SPY", 1.0, day, 2, 0.5, session_open_ts=0.0, session_close_ts=9.0)
    result = SymbolResult(3, "SPY", 2, Signal.SELL, 0.7, (intent,), ("r",), timings=(("s", 0.1),))
    return [
        task,
        Requests(2, requests),
        Replies(replies),
        result,
        WorkerReady(2, 1234),
        Stop(),
        Bundle((task, Replies(replies), Stop())),
    ]


@pytest.mark.parametrize("message", _every_message(), ids=lambda m: type(m).__name__)
def test_every_message_survives_the_pickle_between_processes(message: object) -> None:
    back = pickle.loads(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back) is type(message)
    assert repr(back) == repr(message)  # NaN != NaN: the reprs compare what equality cannot
