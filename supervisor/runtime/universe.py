"""The universe as the venue knows it: checked once, the symbols it does not list dropped.

    settings.universe.symbols --> broker.unknown_symbols (first cycle) --> known symbols
                                          |                                 (every cycle)
                                          +--> one WARNING naming the unknown ones

A symbol the venue has no contract for (IBKR error 200: a typo, a delisted ticker) would
fail every cycle of the run for the same reason; it is named once and left out instead, so
the cycle line counts only symbols that can trade. A symbol that could not be checked (a
timeout) stays: its own requests say what is wrong. A lost connection leaves the check for
the next cycle; a universe the venue knows nothing of stops the run (bad settings).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from supervisor.broker.base import Broker

log = logging.getLogger("supervisor.runtime.universe")


class NoKnownSymbols(Exception):
    """Not one symbol of the universe is known to the venue: nothing could ever trade."""


class Universe:
    def __init__(self, symbols: Sequence[str]) -> None:
        self.configured = tuple(symbols)
        self.unknown: dict[str, str] = {}  # symbol -> the venue's words
        self._known: tuple[str, ...] | None = None  # None: not checked yet

    async def symbols(self, broker: Broker) -> tuple[str, ...]:
        """The symbols to run; the venue is asked on the first call only (ConnectionLost
        propagates and leaves the check for the next call)."""
        if self._known is None:
            unknown = await broker.unknown_symbols(self.configured)
            known = tuple(s for s in self.configured if s not in unknown)
            self.unknown = {s: unknown[s] for s in self.configured if s in unknown}
            if self.unknown:
                log.warning(
                    "%d of %d symbols unknown to %s, dropped from the universe for this run: %s",
                    len(self.unknown),
                    len(self.configured),
                    broker.name,
                    "; ".join(self.unknown.values()),
                    extra={"event": "unknown_symbols", "symbols": list(self.unknown)},
                )
            if not known:
                raise NoKnownSymbols(
                    f"no symbol of universe.symbols is known to "
                    f"{broker.name}: {', '.join(self.configured)}"
                )
            self._known = known
        return self._known
