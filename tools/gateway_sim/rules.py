"""IBKR's limits, enforced like the gateway does: message rate, market-data lines, pacing.

- ``RateWindow``: client->server messages in any rolling second (error 100 over the limit),
  stamped on arrival; the window is shortened by a small tolerance (default 50 ms) because
  a client throttled to one burst per second (ib_insync) would otherwise trip on jitter.
- ``LineBook``: simultaneous market-data lines across all clients (error 101 over the limit);
  streaming subscriptions and snapshots still waiting for their end both hold a line.
- ``HistoricalPacing``: identical request within 15 s, too many for one contract within 2 s,
  too many within 10 minutes (error 162), when the scenario switches it on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable

from tools.gateway_sim.scenario import RulesSpec


class RateWindow:
    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.times: deque[float] = deque()

    def add(self, now: float | None = None) -> int:
        """Record one message; return how many fell in the last window (this one included)."""
        t = time.monotonic() if now is None else now
        self.times.append(t)
        while self.times and t - self.times[0] >= self.window_s:
            self.times.popleft()
        return len(self.times)

    def exceeded(self, count: int) -> bool:
        return count > self.limit


class LineBook:
    """Market-data lines held, keyed by (client id, ticker id)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: set[tuple[int, int]] = set()

    def acquire(self, owner: tuple[int, int]) -> bool:
        if owner in self.held:
            return True
        if len(self.held) >= self.limit:
            return False
        self.held.add(owner)
        return True

    def release(self, owner: tuple[int, int]) -> bool:
        if owner in self.held:
            self.held.discard(owner)
            return True
        return False

    def release_client(self, client_id: int) -> int:
        mine = {o for o in self.held if o[0] == client_id}
        self.held -= mine
        return len(mine)

    def __len__(self) -> int:
        return len(self.held)


class HistoricalPacing:
    def __init__(self, rules: RulesSpec) -> None:
        self.rules = rules
        self.requests: deque[tuple[float, Hashable, Hashable]] = deque()

    def check(self, identity: Hashable, contract_key: Hashable, now: float | None = None) -> str:
        """Record a request; return "" if allowed, else the reason for error 162."""
        if not self.rules.historical_pacing:
            return ""
        t = time.monotonic() if now is None else now
        horizon = max(self.rules.hist_window_s, self.rules.hist_identical_window_s, 2.0)
        while self.requests and t - self.requests[0][0] > horizon:
            self.requests.popleft()
        reason = self._reason(t, identity, contract_key)
        if not reason:
            self.requests.append((t, identity, contract_key))
        return reason

    def _reason(self, t: float, identity: Hashable, contract_key: Hashable) -> str:
        window = self.rules.hist_identical_window_s
        if any(i == identity and t - ts < window for ts, i, _c in self.requests):
            return f"identical request within {window:g} s"
        recent = sum(1 for ts, _i, c in self.requests if c == contract_key and t - ts < 2.0)
        if recent >= self.rules.hist_same_contract_max:
            return f"more than {self.rules.hist_same_contract_max} requests for one contract in 2 s"
        total = sum(1 for ts, _i, _c in self.requests if t - ts < self.rules.hist_window_s)
        if total >= self.rules.hist_max_requests:
            return (f"more than {self.rules.hist_max_requests} requests in "
                    f"{self.rules.hist_window_s:g} s")
        return ""
