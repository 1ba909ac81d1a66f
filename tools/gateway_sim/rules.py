"""IBKR's limits, enforced like the gateway does: message rate, market-data lines, pacing.

- ``RateWindow``: client->server messages in any rolling second (error 100 over the limit),
  stamped on arrival; the window is shortened by a small tolerance (default 50 ms) because
  a client throttled to one burst per second (ib_insync) would otherwise trip on jitter.
- ``ApiPacer``: for a client that connected with ``+PACEAPI``, the gateway delays what is
  over the same limit instead of error 100 and a drop: each message is handled once the
  window has room for it, in the order sent.
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


class ApiPacer:
    """IBKR's own pacing, which a client asks for with the connect option ``+PACEAPI``.

    What is written of it: ib_insync's and ib_async's ``Client.setConnectOptions`` ('Use
    "+PACEAPI" to use request-pacing built into TWS/gateway 974+'; ib_insync 0.9.86 adds
    "obsolete"), C# code on IBKR's client (``SetConnectOptions("+PACEAPI"); // Option to
    pace msgs to 50/second``), the TWS API users' group (groups.io twsapi, message 53772:
    "the built-in pacer IBKR provides", one budget for all messages), and IBKR's own pages
    for clients without it (tws-api rtd_fqa_errors.html: over 50 messages a second "TWS will
    eventually close the connection"). No page gives its algorithm, so the model is the
    plainest one: the window that counts a violation for other clients (``limit`` in any
    ``window_s``) admits this one's messages; the rest wait their turn, in the order sent,
    never refused. ``admit`` says when a message that arrived at ``arrived`` is handled.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.admitted: deque[float] = deque()

    def admit(self, arrived: float) -> float:
        t = max(arrived, self.admitted[-1]) if self.admitted else arrived  # in order
        while True:
            # admitted[0] + window_s, not t - admitted[0]: the sum is what t is set to below,
            # and the difference is rounded (0.95 s at a monotonic clock in 2**15..2**16 s,
            # a host up 9 to 18 hours, came back under 0.95: the oldest never left, a hang)
            while self.admitted and self.admitted[0] + self.window_s <= t:
                self.admitted.popleft()
            if len(self.admitted) < self.limit:
                break
            t = self.admitted[0] + self.window_s  # when the oldest leaves the window
        self.admitted.append(t)
        return t


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
    """IBKR's historical-data pacing (TWS API "Historical Data Limitations"): error 162 for an
    identical request within 15 s, six or more for one contract, exchange and tick type within
    2 s, more than 60 in any 10 minutes; a BID_ASK request counts twice."""

    def __init__(self, rules: RulesSpec) -> None:
        self.rules = rules
        self.requests: deque[tuple[float, Hashable, Hashable, int]] = deque()

    def check(
        self, identity: Hashable, contract_key: Hashable, now: float | None = None, weight: int = 1
    ) -> str:
        """Record a request; return "" if allowed, else the reason for error 162."""
        if not self.rules.historical_pacing:
            return ""
        t = time.monotonic() if now is None else now
        horizon = max(self.rules.hist_window_s, self.rules.hist_identical_window_s, 2.0)
        while self.requests and t - self.requests[0][0] > horizon:
            self.requests.popleft()
        reason = self._reason(t, identity, contract_key, weight)
        if not reason:
            self.requests.append((t, identity, contract_key, weight))
        return reason

    def _reason(self, t: float, identity: Hashable, contract_key: Hashable, weight: int) -> str:
        window = self.rules.hist_identical_window_s
        if any(i == identity and t - ts < window for ts, i, _c, _w in self.requests):
            return f"identical request within {window:g} s"
        recent = sum(w for ts, _i, c, w in self.requests if c == contract_key and t - ts < 2.0)
        if recent + weight > self.rules.hist_same_contract_max:
            return f"more than {self.rules.hist_same_contract_max} requests for one contract in 2 s"
        total = sum(w for ts, _i, _c, w in self.requests if t - ts < self.rules.hist_window_s)
        if total + weight > self.rules.hist_max_requests:
            return (
                f"more than {self.rules.hist_max_requests} requests in "
                f"{self.rules.hist_window_s:g} s"
            )
        return ""
