"""What the client sent, by kind and by symbol, cycle by cycle: for the benchmark's JSON.

The tally wraps the IB client's ``send`` (every request goes through it, paced or not) and
reads each message's fields: its id says the kind, its contract (or, for a chain, the
underlying's name) says the symbol; a cancel is charged to the request it cancels. The
benchmark closes a cycle's tally when the cycle's line is printed, so each cycle's messages
can be matched with its symbols' signals: what a HOLD costs, against a BUY or SELL.

    kind               message
    stock_snapshot     reqMktData of a stock (the underlying's quote)
    stock_cancel       cancelMktData of one
    option_snapshot    reqMktData of an option
    option_cancel      cancelMktData of one
    bars               reqHistoricalData
    chain              reqSecDefOptParams
    contract_details   reqContractDetails
    other              anything else (account, orders, time)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.messages import Signal, SymbolResult

REQ_MKT_DATA, CANCEL_MKT_DATA, REQ_CONTRACT_DETAILS, REQ_HISTORICAL = 1, 2, 9, 20
REQ_SEC_DEF_OPT_PARAMS = 78
KINDS = (
    "stock_snapshot",
    "stock_cancel",
    "option_snapshot",
    "option_cancel",
    "bars",
    "chain",
    "contract_details",
    "other",
)
NO_SYMBOL = ""
# snapshots left to end are never cancelled: their reqIds are forgotten, oldest first, past
# this many (far more than the lines a client may hold), so the tally itself stays flat
REMEMBERED_REQUESTS = 4096


@dataclass
class CycleMessages:
    """One cycle's messages by kind, and those of its HOLD and its BUY/SELL symbols."""

    by_kind: Counter[str] = field(default_factory=Counter)
    hold: int = 0  # symbol-cycles
    hold_messages: int = 0
    directional: int = 0
    directional_messages: int = 0


class MessageTally:
    """Counts every message the client sends as (symbol, kind); ``end_cycle`` folds a
    cycle's counts with its results into a CycleMessages (no result is kept)."""

    def __init__(self) -> None:
        self.current: Counter[tuple[str, str]] = Counter()
        self.cycles: list[CycleMessages] = []
        self._market: dict[int, tuple[str, str]] = {}  # reqId -> (symbol, snapshot kind)

    def install(self, client: Any) -> None:
        """Wrap ``client.send`` (the library's one way out) to count what goes through it."""
        send: Callable[..., Any] = client.send

        def counting(*fields: Any, **kwargs: Any) -> Any:
            result = send(*fields, **kwargs)  # a send that raises sent nothing
            self.count(fields)
            return result

        client.send = counting

    def count(self, fields: Sequence[Any]) -> None:
        msg_id = fields[0] if fields and isinstance(fields[0], int) else None
        contract = next((f for f in fields if hasattr(f, "secType")), None)
        symbol = str(getattr(contract, "symbol", "") or NO_SYMBOL)
        if msg_id == REQ_MKT_DATA and len(fields) > 2:
            kind = (
                "option_snapshot"
                if contract is not None and (contract.secType in ("OPT", "FOP"))
                else "stock_snapshot"
            )
            self._market[int(fields[2])] = (symbol, kind)
            if len(self._market) > REMEMBERED_REQUESTS:
                del self._market[next(iter(self._market))]
        elif msg_id == CANCEL_MKT_DATA and len(fields) > 2:
            symbol, asked = self._market.pop(int(fields[2]), (NO_SYMBOL, "stock_snapshot"))
            kind = asked.replace("_snapshot", "_cancel")
        elif msg_id == REQ_HISTORICAL:
            kind = "bars"
        elif msg_id == REQ_SEC_DEF_OPT_PARAMS:
            kind = "chain"
            symbol = str(fields[2]) if len(fields) > 2 else NO_SYMBOL
        elif msg_id == REQ_CONTRACT_DETAILS:
            kind = "contract_details"
        else:
            kind, symbol = "other", NO_SYMBOL
        self.current[(symbol, kind)] += 1

    def end_cycle(self, results: Sequence[SymbolResult]) -> None:
        """Close the cycle whose results these are (at its line: a snapshot left to end
        that is cancelled later counts in the next cycle, against the same symbol)."""
        cycle = CycleMessages()
        by_symbol: Counter[str] = Counter()
        for (symbol, kind), n in self.current.items():
            cycle.by_kind[kind] += n
            by_symbol[symbol] += n
        for result in results:
            if not result.ok or result.skipped:
                continue  # no decision: neither a HOLD nor a trade
            if result.signal is Signal.HOLD:
                cycle.hold += 1
                cycle.hold_messages += by_symbol[result.symbol]
            else:
                cycle.directional += 1
                cycle.directional_messages += by_symbol[result.symbol]
        self.cycles.append(cycle)
        self.current = Counter()


def per_symbol_cycle(cycles: Sequence[CycleMessages], symbols: int) -> dict[str, Any]:
    """Steady cycles (all but the first): messages per symbol-cycle by kind, and per HOLD
    symbol-cycle (what a symbol costs when the strategy decides nothing) against per
    BUY/SELL symbol-cycle."""
    steady = cycles[1:] or cycles
    by_kind: Counter[str] = Counter()
    for cycle in steady:
        by_kind.update(cycle.by_kind)
    held = sum(c.hold for c in steady)
    directional = sum(c.directional for c in steady)
    symbol_cycles = max(1, symbols * len(steady))

    def ratio(messages: int, count: int) -> float | None:
        return round(messages / count, 3) if count else None

    return {
        "msg_per_symbol_cycle_by_kind": {k: round(by_kind[k] / symbol_cycles, 3) for k in KINDS},
        "client_msg_per_symbol_cycle": round(sum(by_kind.values()) / symbol_cycles, 3),
        "msg_per_hold_symbol_cycle": ratio(sum(c.hold_messages for c in steady), held),
        "msg_per_directional_symbol_cycle": ratio(
            sum(c.directional_messages for c in steady), directional
        ),
        "hold_symbol_cycles": held,
        "directional_symbol_cycles": directional,
    }
