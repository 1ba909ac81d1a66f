"""tools/bench_messages.py: what the client sent, by kind and symbol, matched with signals."""

from __future__ import annotations

from types import SimpleNamespace

from common.messages import Signal, SymbolResult
from tools.bench_messages import REMEMBERED_REQUESTS, MessageTally, per_symbol_cycle


def stock(symbol: str) -> SimpleNamespace:
    return SimpleNamespace(secType="STK", symbol=symbol)


def option(symbol: str) -> SimpleNamespace:
    return SimpleNamespace(secType="OPT", symbol=symbol)


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, *fields, makeEmpty=True):  # noqa: N803 - ib_insync's own keyword
        self.sent.append(fields)


def test_messages_are_counted_by_kind_and_charged_to_their_symbols_signal() -> None:
    # Given a tally on a client, and two cycles: QQQ holds (bars only), SPY sells
    client = FakeClient()
    tally = MessageTally()
    tally.install(client)
    for _cycle in range(2):
        client.send(20, 1, stock("QQQ"), False)  # bars
        client.send(20, 2, stock("SPY"), False)
        client.send(1, 11, 3, stock("SPY"), False, "", True)  # the underlying's snapshot
        client.send(78, 4, "SPY", "", "STK", 756733)  # the chain
        client.send(1, 11, 5, option("SPY"), False, "", True)
        client.send(2, 2, 5)  # its cancel
        client.send(2, 2, 3)
        client.send(49)  # reqCurrentTime: nobody's
        tally.end_cycle([SymbolResult(1, "QQQ", 1), SymbolResult(1, "SPY", 1, signal=Signal.SELL)])
    # Then the steady cycle's figures say what each kind and each signal cost
    figures = per_symbol_cycle(tally.cycles, symbols=2)
    assert figures["msg_per_symbol_cycle_by_kind"] == {
        "stock_snapshot": 0.5,
        "stock_cancel": 0.5,
        "option_snapshot": 0.5,
        "option_cancel": 0.5,
        "bars": 1.0,
        "chain": 0.5,
        "contract_details": 0.0,
        "other": 0.5,
    }
    assert figures["msg_per_hold_symbol_cycle"] == 1.0
    assert figures["msg_per_directional_symbol_cycle"] == 6.0
    assert (figures["hold_symbol_cycles"], figures["directional_symbol_cycles"]) == (1, 1)
    assert len(client.sent) == 16  # every message still went out


def test_failed_and_skipped_symbols_are_neither_holds_nor_trades() -> None:
    tally = MessageTally()
    tally.count((20, 1, stock("AAA"), False))
    tally.end_cycle(
        [
            SymbolResult(1, "AAA", 1, error="timed out"),
            SymbolResult(1, "BBB", 1, skipped="no usable price"),
        ]
    )
    figures = per_symbol_cycle(tally.cycles, symbols=2)
    assert figures["msg_per_hold_symbol_cycle"] is None
    assert figures["hold_symbol_cycles"] == figures["directional_symbol_cycles"] == 0


def test_requests_never_cancelled_are_forgotten_oldest_first() -> None:
    tally = MessageTally()
    for req_id in range(REMEMBERED_REQUESTS + 10):
        tally.count((1, 11, req_id, stock("SPY"), False))
    assert len(tally._market) == REMEMBERED_REQUESTS
    tally.count((2, 2, REMEMBERED_REQUESTS + 9))  # the newest is still known: SPY's
    assert tally.current[("SPY", "stock_cancel")] == 1
