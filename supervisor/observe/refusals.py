"""The console's summary of a refusal said again and again: the first is shown, then the 10th,
100th, 1000th ... with its count.

A replayed week of the stub refuses the same SELL on SPY (a put already held) on every cycle:
thousands of identical lines that hide everything else on a terminal. The JSON log and the
journal keep every one; the console says it once and then how often.
"""

from __future__ import annotations

import logging

Key = tuple[str, str, str]


def refusal_key(record: logging.LogRecord) -> Key | None:
    """(symbol, signal, rule) of a refused intent's record (execution.py), else None."""
    if getattr(record, "event", None) != "execution" or getattr(record, "accepted", True):
        return None
    return (
        str(getattr(record, "symbol", "")),
        str(getattr(record, "signal", "")),
        str(getattr(record, "rule", "")),
    )


class RefusalRepeats:
    """How many times each refusal was seen, and whether this one is shown."""

    def __init__(self) -> None:
        self.seen: dict[Key, int] = {}

    def note(self, record: logging.LogRecord) -> str | None:
        """None: not shown; "": shown as it is; else the count to add to it."""
        key = refusal_key(record)
        if key is None:
            return ""
        n = self.seen[key] = self.seen.get(key, 0) + 1
        if n == 1:
            return ""
        if _power_of_ten(n):
            return f"the same refusal {n:,} times this run; the JSON log has each"
        return None


def _power_of_ten(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1
