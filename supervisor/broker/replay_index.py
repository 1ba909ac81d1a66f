"""Which recorded answer a replay gives: the lookup rule, over plain values.

A recording (supervisor/recording/format.py) is a run's broker answers, each stamped with
the session clock when it was given, and the times its cycles started. A replay runs its
cycles at those times on a frozen clock (supervisor/runtime/offline.py), so "now" at the
start of replayed cycle k is cycle k's start (then it follows the answers given: broker/
replay.py), while the answers the original cycle k got were given a little after it. The
rule, per request (the same symbol; bars of the same size; the same option contract):

- the cycle's window is [its start, the next cycle's start) (before the first cycle: what the
  run asked before it, e.g. the day's account; the last runs on to the recording's end);
- the n-th time a replay asks a request within a window it gets the n-th answer the original
  got within that window (the original's own order: a position marked at the cycle's start,
  then the worker's quotes), and the window's last one again when it asks more often;
- a window where the original never asked it: the latest answer before the window (at or
  before now), if not older than ``max_age`` where one is given (an option quote: the market
  moves); else none, which the broker answers with a model or a refusal.

With the recording's own settings the replay asks what the original asked, in the same order
per request, so it gets exactly the original's answers (the parity check).
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Answer(Generic[V]):
    """One recorded answer: its value, or the broker error's text it failed with."""

    ts: float  # the session clock when the broker answered
    value: V | None = None
    error: str | None = None


class Timeline:
    """The recorded cycles' start times, which cut the recording into windows."""

    def __init__(self, starts: Iterable[float]) -> None:
        self.starts = sorted(starts)

    def index(self, now: float) -> int:
        """Which window ``now`` falls in: -1 before the first cycle, else the cycle's index."""
        return bisect.bisect_right(self.starts, now) - 1

    def window(self, now: float) -> tuple[float, float]:
        """[start, end) of the window ``now`` falls in."""
        i = bisect.bisect_right(self.starts, now)
        lo = self.starts[i - 1] if i > 0 else float("-inf")
        hi = self.starts[i] if i < len(self.starts) else float("inf")
        return lo, hi


class AnswerIndex(Generic[K, V]):
    """One kind's recorded answers by request key, and how far a replay has used each."""

    def __init__(self, timeline: Timeline, answers: Iterable[tuple[K, Answer[V]]] = ()) -> None:
        self.timeline = timeline
        self._by_key: dict[K, list[Answer[V]]] = {}
        for key, answer in answers:
            self._by_key.setdefault(key, []).append(answer)
        self._ts: dict[K, list[float]] = {}
        for key, found in self._by_key.items():
            found.sort(key=lambda a: a.ts)  # stable: equal times keep the recorded order
            self._ts[key] = [a.ts for a in found]
        self._given: dict[K, tuple[float, int]] = {}  # key -> (window start, next to give)

    def keys(self) -> Iterable[K]:
        return self._by_key.keys()

    def recorded(self, key: K) -> Sequence[Answer[V]]:
        return self._by_key.get(key, ())

    def at(self, key: K, now: float, max_age: float | None = None) -> Answer[V] | None:
        """The answer a replay gets for ``key`` asked at ``now`` (the rule above); None when
        the recording has none to give."""
        found = self._by_key.get(key)
        if not found:
            return None
        lo, hi = self.timeline.window(now)
        times = self._ts[key]
        first, end = bisect.bisect_left(times, lo), bisect.bisect_left(times, hi)
        if end > first:
            window, given = self._given.get(key, (lo, first))
            pick = min(given if window == lo else first, end - 1)
            self._given[key] = (lo, pick + 1)
            return found[pick]
        before = bisect.bisect_right(times, now) - 1
        if before < 0:
            return None
        answer = found[before]
        if max_age is not None and now - answer.ts > max_age:
            return None
        return answer

    def latest(self, key: K, now: float, max_age: float | None = None) -> Answer[V] | None:
        """The latest answer at or before the end of ``now``'s window, without using it up
        (what the model reads its smile and spot from); ``max_age`` as in ``at``."""
        found = self._by_key.get(key)
        if not found:
            return None
        _, hi = self.timeline.window(now)
        i = bisect.bisect_left(self._ts[key], hi) - 1
        if i < 0 or (max_age is not None and now - found[i].ts > max_age):
            return None
        return found[i]
